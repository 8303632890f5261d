"""The signed-in user's daily journals: pages, search, exports."""

from .routes import setup_journal

__all__ = ["setup_journal"]
