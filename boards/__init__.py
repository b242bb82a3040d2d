"""ttzo.boards."""
