"""The browser page: static files in ``static/``, served by ``python -m web``, driven by ``tools.browser``."""
