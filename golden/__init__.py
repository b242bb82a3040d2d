"""ttzo.golden."""
