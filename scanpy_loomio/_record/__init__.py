"""The package's own record in a loom file and the tags on its datasets."""
