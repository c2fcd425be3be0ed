"""``python -m tillpoint``: the `tillpoint` command."""

from tillpoint.cli import main

main()
