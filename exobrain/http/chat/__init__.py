"""Chat over REST, SSE and WebSockets, served by whichever instance owns the user."""

from exobrain.http.contract import USER, Reply, operation

from .routes import UNAVAILABLE, session_ticker_ctx, setup_chat
from .sessions import ownership_ctx
from .socket import chat_socket, setup_chat_socket

# The upgrade's HTTP answers; the protocol after it is docs/websocket-protocol.md.
operation(
    security=USER,
    outage=True,
    responses={
        101: Reply("Switching Protocols: the socket speaks the chat protocol.", None),
        400: Reply("Not a WebSocket upgrade (`Upgrade: websocket` and its headers)."),
        403: Reply("A session cookie from an origin that may not open a chat socket."),
        503: UNAVAILABLE,
    },
)(chat_socket)

__all__ = ["ownership_ctx", "session_ticker_ctx", "setup_chat", "setup_chat_socket"]
