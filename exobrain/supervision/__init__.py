"""The supervisor tree over the actors, its health snapshot, and the loop bridge."""

from .actor import SupervisedActor, Supervision, ThreadTracker
from .bridge import ActorUnavailable, LoopFuture, ask, run_on_loop, tell, wait
from .messages import ChildExited, Failure
from .supervisor import ChildHandle, ChildSpec, Intensity, RestartPolicy, Supervisor
from .system import ActorSystem, fatal_event

__all__ = [
    "ActorSystem",
    "ActorUnavailable",
    "ChildExited",
    "ChildHandle",
    "ChildSpec",
    "Failure",
    "Intensity",
    "LoopFuture",
    "RestartPolicy",
    "SupervisedActor",
    "Supervision",
    "Supervisor",
    "ThreadTracker",
    "ask",
    "fatal_event",
    "run_on_loop",
    "tell",
    "wait",
]
