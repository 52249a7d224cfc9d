"""The Cluster Manager's HTTP side: a JSON API (with its OpenAPI document), the compatible
calls of the product this replaces, and Prometheus metrics, in one ASGI app.

``workers.manager.app.create_app(settings)`` builds it; ``qwc manager`` serves it on
uvicorn. The routes call the same functions as the CLI (``workers.liveness.listing``,
``workers.store``, ``workers.takeover``, ``workers.commands``); nothing is decided here.

Modules: ``app`` (the factory, error handlers), ``resources`` (the Redis client and the
store, opened on first use), ``auth`` (bearer tokens), ``errors`` (the JSON error body),
``models`` (the OpenAPI shapes), ``routes`` (one module per resource), ``compat`` (pure:
the compatible takeover call's body and answer), ``metrics`` (the scrape-time collector).
The package's ``__init__`` imports nothing; its modules import FastAPI.
How to use it: docs/manager.md.
"""
