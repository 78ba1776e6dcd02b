"""The read path: which convention a file follows and how each dataset becomes part of an AnnData."""
