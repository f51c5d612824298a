"""The self-hosted WebSocket layer: ASGI application, consumer and per-process hub."""
