"""The HTTP API and the pages: one ASGI app over a built App, and the fast
path that answers ``POST /predict``."""
