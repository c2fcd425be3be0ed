from tests.security.chain import chain, tills  # noqa: F401 - fixtures
