"""The `tillpoint hq ...` commands."""
