"""ttzo.sim."""
