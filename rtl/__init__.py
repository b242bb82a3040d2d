"""ttzo.rtl."""
