pytest_plugins = ["tests.fixtures.pcsc", "tests.fixtures.hq"]
