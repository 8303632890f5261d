"""Knowledge updates: dispatched as jobs, watched, processed, recalled."""

from .base import setup_knowledge_base
from .updates import setup_knowledge
from .worker import setup_job_worker

__all__ = ["setup_job_worker", "setup_knowledge", "setup_knowledge_base"]
