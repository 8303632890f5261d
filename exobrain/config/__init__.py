"""Configuration: typed settings from the environment, and logging set-up."""

from .logging import configure_logging
from .settings import DEFAULT_JWT_SECRET, ConfigurationError, Settings, load_settings

__all__ = [
    "DEFAULT_JWT_SECRET",
    "ConfigurationError",
    "Settings",
    "configure_logging",
    "load_settings",
]
