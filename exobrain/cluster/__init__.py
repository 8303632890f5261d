"""A cluster of instances: one owner per user, chat streams logged on JetStream (DESIGN.md §10).

- :class:`Leases`: who owns a user (Redis lease, PostgreSQL fencing epoch).
- :class:`Ownership`: this instance's users: heartbeat, release, take-over of orphans.
- :class:`Commands`: commands forwarded to a user's owner over NATS request/reply.
- :class:`ChatLog`: every stream's entries, replayable and followed live from anywhere.
"""

from ._commands import Commands, OwnerUnreachable
from ._leases import Leases
from ._log import ChatLog, Logged, LogReader, finished
from ._ownership import STORE_ERRORS, Ownership

__all__ = [
    "STORE_ERRORS",
    "ChatLog",
    "Commands",
    "Leases",
    "LogReader",
    "Logged",
    "OwnerUnreachable",
    "Ownership",
    "finished",
]
