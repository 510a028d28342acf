"""The HTTP front door: a lean ASGI app (``app``) on uvicorn (``run``), Truss's paths and formats."""
