"""Each resource's outside shape, declared once (pydantic models).

A resource's records validate the admin API's request bodies, serialise the answers of both
the admin API and the CLI's `--json`, and are the schemas of `/admin/api/openapi.json`. The
services check meaning (a corporation exists, a URI is allowed); the records check form (types,
lengths, patterns, unknown fields) and say it in the document the API publishes.
"""
