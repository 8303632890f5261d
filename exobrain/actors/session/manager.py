"""The SessionManager: starts one SessionActor per user this instance owns, on first use.

Sessions are its children: a crashed session is not restarted (its turn has
already ended with ``error`` then ``done``); the user's next message starts a
fresh one that rebuilds its state from PostgreSQL and the chat log. Idle
sessions stop themselves. A ``Tick`` from the loop reaches every session
through here. Which users this instance owns is decided on the loop (the
leases); ``SessionFor`` carries the ownership epoch, and the manager reports
every session that starts or ends, so that a lease is released only when no
session needs it.

The manager also keeps which connections (WebSocket inboxes) are attached to
each user and hands them to every session it starts, so an open connection
never keeps an idle session alive and survives a session's crash unnoticed.
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

import pykka

from exobrain.supervision import ChildExited, SupervisedActor, Supervision
from exobrain.supervision.messages import TakeSnapshot
from exobrain.supervision.supervisor import mailbox_depth

from .directory import Running
from .messages import (
    Attach,
    AttachTo,
    Detach,
    DetachFrom,
    DropSession,
    RunningSession,
    SessionFor,
    StopSessions,
    Tick,
)
from .stream import Subscription

log = logging.getLogger(__name__)

#: Starts a session: supervision, user, epoch, inherited (see SessionFor), attachments.
StartSession = Callable[
    [Supervision, uuid.UUID, int, bool, frozenset[Subscription]], pykka.ActorRef[Any]
]
#: Told, from the manager's thread, when a user's session starts (what runs) or ends (None).
SessionsChanged = Callable[[uuid.UUID, Running | None], None]


class SessionManager(SupervisedActor):
    has_children = True

    def __init__(
        self,
        supervision: Supervision,
        *,
        start_session: StartSession,
        changed: SessionsChanged = lambda user_id, running: None,
    ) -> None:
        super().__init__(supervision)
        self._start_session = start_session
        self._changed = changed
        self._sessions: dict[uuid.UUID, tuple[pykka.ActorRef[Any], int]] = {}
        self._attached: dict[uuid.UUID, set[Subscription]] = {}
        self._started_at = time.monotonic()
        self._crashes = 0

    def on_receive(self, message: Any) -> Any:
        match message:
            case SessionFor():
                return self._session(message)
            case RunningSession() | DropSession():
                return self._running(message)
            case ChildExited(name=name, urn=urn, failure=failure):
                self._exited(name, urn, failure is not None)
            case AttachTo(user_id=user_id, sink=sink):
                self._attached.setdefault(user_id, set()).add(sink)
                self._tell_live(user_id, Attach(sink))
            case DetachFrom(user_id=user_id, sink=sink):
                attached = self._attached.get(user_id, set())
                attached.discard(sink)
                if not attached:
                    self._attached.pop(user_id, None)
                self._tell_live(user_id, Detach(sink))
            case StopSessions():
                self._stop_all()
            case Tick():
                for ref, _ in self._sessions.values():
                    with contextlib.suppress(pykka.ActorDeadError):
                        ref.tell(message)
            case TakeSnapshot():
                return self._snapshot()
            case _:
                return super().on_receive(message)
        return None

    def stopping(self) -> None:
        self._stop_all()

    def failed(self, exc: BaseException | None) -> None:
        self._stop_all()  # the connections attach again to the next incarnation

    def _session(self, wanted: SessionFor) -> pykka.ActorRef[Any]:
        user_id, epoch = wanted.user_id, wanted.epoch
        running = self._sessions.get(user_id)
        if running is not None and running[0].is_alive() and running[1] == epoch:
            return running[0]
        if running is not None:  # an older epoch's session: its writes would be refused
            running[0].stop(block=False)
            self._changed(user_id, None)
        supervision = Supervision(str(user_id), self.actor_ref, self.supervision.tracker)
        attached = frozenset(self._attached.get(user_id, ()))
        ref = self._start_session(supervision, user_id, epoch, wanted.inherited, attached)
        self._sessions[user_id] = (ref, epoch)
        self._changed(user_id, Running(ref, epoch))
        return ref

    def _running(self, message: RunningSession | DropSession) -> pykka.ActorRef[Any] | None:
        """The user's running session; stopped first if the lease on the user was lost."""
        running = self._sessions.get(message.user_id)
        if running is None:
            return None
        if isinstance(message, DropSession):
            del self._sessions[message.user_id]
            running[0].stop(block=False)
            self._changed(message.user_id, None)
            return None
        return running[0] if running[0].is_alive() else None

    def _tell_live(self, user_id: uuid.UUID, message: Attach | Detach) -> None:
        """A session that is not running needs no word: the next one starts with the set."""
        running = self._sessions.get(user_id)
        if running is not None:
            with contextlib.suppress(pykka.ActorDeadError):
                running[0].tell(message)

    def _exited(self, name: str, urn: str, crashed: bool) -> None:
        user_id = uuid.UUID(name)
        running = self._sessions.get(user_id)
        if running is not None and running[0].actor_urn == urn:
            del self._sessions[user_id]
            self._changed(user_id, None)
        if crashed:
            self._crashes += 1
            log.warning("chat session of %s crashed; the next message starts a new one", user_id)

    def _stop_all(self) -> None:
        """Stop every session (each stores its running turn), then let the connections go."""
        futures = [ref.stop(block=False) for ref, _ in self._sessions.values()]
        for future in futures:
            with contextlib.suppress(pykka.Timeout, pykka.ActorDeadError):
                future.get(timeout=30)
        for user_id in self._sessions:
            self._changed(user_id, None)
        self._sessions.clear()
        for attached in self._attached.values():
            for sink in attached:
                sink.end()
        self._attached.clear()

    def _snapshot(self) -> dict[str, Any]:
        return {
            "name": self.supervision.name,
            "children": [
                {
                    "name": str(user_id),
                    "class": ref.actor_class.__name__,
                    "state": "running" if ref.is_alive() else "stopped",
                    "mailbox": mailbox_depth(ref),
                    "restarts": 0,
                    "epoch": epoch,
                }
                for user_id, (ref, epoch) in self._sessions.items()
            ],
            "crashes": self._crashes,
        }
