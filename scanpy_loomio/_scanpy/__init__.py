"""Integration with scanpy and anndata: the plugin functions and the opt-in default readers."""
