"""Codecs: how one column, text value, auxiliary array or R type is stored in loom and restored exactly."""
