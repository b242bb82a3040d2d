"""ttzo.host."""
