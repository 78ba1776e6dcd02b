"""The loom format's own facts: its groups, axes, allowed dtypes and spec versions, written once."""
