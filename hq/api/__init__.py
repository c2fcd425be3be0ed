"""Head office's HTTP API."""
