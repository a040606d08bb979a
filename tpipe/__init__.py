"""tpipe."""
