"""HTTP surface: app factory, middlewares, health, docs; REST, SSE and WebSocket routes."""

from .app import create_app

__all__ = ["create_app"]
