"""The admin console and API tests (a package, so its basenames may repeat other folders')."""
