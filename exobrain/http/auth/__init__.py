"""Login, tokens and sessions, and the one function every protected route goes through."""

from .routes import setup_auth

__all__ = ["setup_auth"]
