"""Knowledge updates: dispatched as jobs, watched, processed, recalled."""

from .base import knowledge_base_ctx
from .updates import setup_knowledge
from .worker import setup_job_worker

__all__ = ["knowledge_base_ctx", "setup_job_worker", "setup_knowledge"]
