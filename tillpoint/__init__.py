"""The `tillpoint` command, assembled from the till's commands and head office's (``tillpoint.cli``)."""
