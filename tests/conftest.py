"""Root test configuration: shared fixtures come from plugin modules under
tests/fixtures so each area keeps its own."""

pytest_plugins = [
    "tests.fixtures.postgres",
    "tests.fixtures.fakes",
    "tests.fixtures.aws",
]
