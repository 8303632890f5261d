"""PostgreSQL access: the shared pool, migrations (adopting the reference's database), seed data."""

from .adoption import UnrecognisedSchema
from .migrations import MigrationError, available_migrations, migrate
from .pool import create_pool

__all__ = ["MigrationError", "UnrecognisedSchema", "available_migrations", "create_pool", "migrate"]
