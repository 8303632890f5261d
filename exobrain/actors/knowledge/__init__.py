"""Knowledge dispatch: uncommitted journal messages become token-bounded jobs, exactly once."""

from exobrain.supervision import ChildHandle, ask

from .actor import KnowledgeDispatchActor
from .chunking import Chunk, Entry, TokenEstimator, chunk, estimate_tokens
from .messages import RequestUpdate, UpdateResult
from .store import recent


async def request_update(
    dispatcher: ChildHandle, command: RequestUpdate, *, timeout: float
) -> UpdateResult:
    """Ask from the event loop; returns once every chunk is enqueued, refused or left pending."""
    result: UpdateResult = await ask(dispatcher.ref, command, timeout=timeout)
    return result


__all__ = [
    "Chunk",
    "Entry",
    "KnowledgeDispatchActor",
    "RequestUpdate",
    "TokenEstimator",
    "UpdateResult",
    "chunk",
    "estimate_tokens",
    "recent",
    "request_update",
]
