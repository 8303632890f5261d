"""Chat over REST, SSE and WebSockets, served by whichever instance owns the user."""

from .routes import session_ticker_ctx, setup_chat
from .sessions import ownership_ctx
from .socket import setup_chat_socket

__all__ = ["ownership_ctx", "session_ticker_ctx", "setup_chat", "setup_chat_socket"]
