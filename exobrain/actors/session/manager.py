"""The SessionManager: starts one SessionActor per active user, on first use.

Sessions are its children: a crashed session is not restarted (its turn has
already ended with ``error`` then ``done``); the user's next message starts a
fresh one that rebuilds its state from PostgreSQL. Idle sessions stop
themselves. A ``Tick`` from the loop reaches every session through here.

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

from .messages import Attach, AttachTo, Detach, DetachFrom, SessionFor, StopSessions, Tick
from .stream import Subscription

log = logging.getLogger(__name__)

StartSession = Callable[[Supervision, uuid.UUID, frozenset[Subscription]], pykka.ActorRef[Any]]


class SessionManager(SupervisedActor):
    has_children = True

    def __init__(self, supervision: Supervision, *, start_session: StartSession) -> None:
        super().__init__(supervision)
        self._start_session = start_session
        self._sessions: dict[uuid.UUID, pykka.ActorRef[Any]] = {}
        self._attached: dict[uuid.UUID, set[Subscription]] = {}
        self._started_at = time.monotonic()
        self._crashes = 0

    def on_receive(self, message: Any) -> Any:
        match message:
            case SessionFor(user_id=user_id):
                return self._session(user_id)
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
                for ref in self._sessions.values():
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

    def _session(self, user_id: uuid.UUID) -> pykka.ActorRef[Any]:
        ref = self._sessions.get(user_id)
        if ref is None or not ref.is_alive():
            supervision = Supervision(str(user_id), self.actor_ref, self.supervision.tracker)
            attached = frozenset(self._attached.get(user_id, ()))
            ref = self._sessions[user_id] = self._start_session(supervision, user_id, attached)
        return ref

    def _tell_live(self, user_id: uuid.UUID, message: Attach | Detach) -> None:
        """A session that is not running needs no word: the next one starts with the set."""
        ref = self._sessions.get(user_id)
        if ref is not None:
            with contextlib.suppress(pykka.ActorDeadError):
                ref.tell(message)

    def _exited(self, name: str, urn: str, crashed: bool) -> None:
        user_id = uuid.UUID(name)
        ref = self._sessions.get(user_id)
        if ref is not None and ref.actor_urn == urn:
            del self._sessions[user_id]
        if crashed:
            self._crashes += 1
            log.warning("chat session of %s crashed; the next message starts a new one", user_id)

    def _stop_all(self) -> None:
        """Stop every session (each stores its running turn), then let the connections go."""
        futures = [ref.stop(block=False) for ref in self._sessions.values()]
        for future in futures:
            with contextlib.suppress(pykka.Timeout, pykka.ActorDeadError):
                future.get(timeout=30)
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
                }
                for user_id, ref in self._sessions.items()
            ],
            "crashes": self._crashes,
        }
