"""The suite's fixtures, loaded from the `support` package (tests/ is on sys.path: pytest puts
a conftest's folder there when the folder is no package). Tests import helpers from
`support.<module>`, never from a conftest."""

import pytest

# Before any `support` module is imported: their asserts report like the tests' own.
pytest.register_assert_rewrite("support")

pytest_plugins = [
    "support.databases",
    "support.clocks",
    "support.app",
    "support.logs",
    "support.world",
    "support.browser",
    "support.wecom",
    "support.admin",
]
