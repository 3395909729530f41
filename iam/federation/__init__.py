"""Outside identity providers (WeCom first). Knows nothing of OIDC, Starlette or SQLAlchemy."""
