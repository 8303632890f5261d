"""The journal: the single writer of chat messages and tool calls."""

from exobrain.supervision import ChildHandle, ask, wait

from .actor import JournalActor, Listener
from .messages import AppendMessages, JournalChanged, NewMessage, NewToolCall, StoredMessage


async def append(
    journal: ChildHandle, command: AppendMessages, *, timeout: float
) -> tuple[StoredMessage, ...]:
    """Append from the event loop; returns once the messages are committed."""
    receipt = await ask(journal.ref, command, timeout=timeout)
    stored: tuple[StoredMessage, ...] = await wait(receipt, timeout=timeout)
    return stored


__all__ = [
    "AppendMessages",
    "JournalActor",
    "JournalChanged",
    "Listener",
    "NewMessage",
    "NewToolCall",
    "StoredMessage",
    "append",
]
