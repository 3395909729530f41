"""Interactive pages: authorization dispatch, login, logout."""
