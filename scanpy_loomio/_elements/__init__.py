"""Elements beyond columns and matrices: global attributes, embeddings, graphs, the sidecar and tools' layouts."""
