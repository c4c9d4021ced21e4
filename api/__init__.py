"""The landcover REST service (FastAPI)."""
