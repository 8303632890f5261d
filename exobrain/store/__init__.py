"""PostgreSQL access: the shared pool, migrations and development seed data."""

from .migrations import MigrationError, available_migrations, migrate
from .pool import create_pool

__all__ = ["MigrationError", "available_migrations", "create_pool", "migrate"]
