"""The write path: planning an AnnData's layout in a convention and writing it atomically."""
