"""The browser page: static files in ``static/``, served by ``python -m web`` (the tests and the benchmark drive it
headless with ``tools/browser.py``)."""
