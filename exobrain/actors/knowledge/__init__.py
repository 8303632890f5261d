"""Knowledge dispatch: uncommitted journal messages become token-bounded jobs, exactly once."""

from exobrain.supervision import ChildHandle, ask, wait

from .actor import KnowledgeDispatchActor
from .chunking import Chunk, Entry, TokenEstimator, chunk, estimate_tokens
from .messages import Dispatching, RequestUpdate, UpdateResult
from .store import recent


async def request_update(
    dispatcher: ChildHandle,
    command: RequestUpdate,
    *,
    timeout: float,
    patience: float | None = None,
) -> UpdateResult:
    """Ask from the event loop; returns once every chunk is enqueued, refused or left pending.

    The update is accepted once its outbox rows are written (within ``timeout``);
    with ``patience``, an orchestrator that has not answered within that many
    seconds more makes it ``pending``, with the ids of its jobs: they follow in
    the background.
    """
    reply: UpdateResult | Dispatching = await ask(dispatcher.ref, command, timeout=timeout)
    if isinstance(reply, UpdateResult):
        return reply
    try:
        return await wait(reply.result, timeout=timeout if patience is None else patience)
    except TimeoutError:
        return UpdateResult("pending", reply.job_ids)


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
