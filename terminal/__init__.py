"""tillpoint: the store-side application (pure core, store, service, API, daemon, CLI)."""

__version__ = "0.1.0"
