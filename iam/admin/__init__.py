"""The admin console (HTML under /admin) and the admin REST API (JSON under /admin/api)."""
