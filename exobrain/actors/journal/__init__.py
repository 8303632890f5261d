"""The journal: the single writer of chat messages and tool calls."""

import asyncio
from collections.abc import Sequence

import asyncpg

from exobrain.config import Settings
from exobrain.metrics import Metrics
from exobrain.supervision import ChildHandle, ChildSpec, ask, wait

from .actor import JournalActor, Listener
from .messages import (
    AppendMessages,
    Fenced,
    JournalChanged,
    NewMessage,
    NewToolCall,
    StoredMessage,
)
from .store import JOURNAL_ERRORS


def journal_spec(
    settings: Settings,
    pool: asyncpg.Pool,
    loop: asyncio.AbstractEventLoop,
    metrics: Metrics,
    listeners: Sequence[Listener] = (),
) -> ChildSpec:
    """The JournalActor as a supervised child, configured from ``settings``."""
    return ChildSpec(
        "journal",
        lambda supervision: JournalActor.start(
            supervision,
            pool=pool,
            loop=loop,
            max_batch=settings.journal_batch_max_size,
            max_delay=settings.journal_batch_max_delay_ms / 1000,
            write_timeout=settings.journal_write_timeout_seconds,
            metrics=metrics,
            listeners=listeners,
        ),
    )


async def append(
    journal: ChildHandle, command: AppendMessages, *, timeout: float
) -> tuple[StoredMessage, ...]:
    """Append from the event loop; returns once the messages are committed."""
    receipt = await ask(journal.ref, command, timeout=timeout)
    stored: tuple[StoredMessage, ...] = await wait(receipt, timeout=timeout)
    return stored


__all__ = [
    "JOURNAL_ERRORS",
    "AppendMessages",
    "Fenced",
    "JournalActor",
    "JournalChanged",
    "Listener",
    "NewMessage",
    "NewToolCall",
    "StoredMessage",
    "append",
    "journal_spec",
]
