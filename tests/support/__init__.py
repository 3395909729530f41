"""Helpers shared by the test suites, one concept per module. Tests import the values,
classes and functions they use from here; the fixtures are loaded once for the whole suite
by `pytest_plugins` in tests/conftest.py."""
