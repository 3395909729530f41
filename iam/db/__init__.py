"""Storage: SQLAlchemy 2 models, the engine and ORM sessions (`store`), a protocol request's unit
of work (`unit`), the hot path's statements and frozen views (`fastpath`), and how those
statements run on the driver's cursor (`prepared`)."""
