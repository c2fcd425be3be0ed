"""Head office's storage engines."""
