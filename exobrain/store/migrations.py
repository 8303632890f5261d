"""Forward-only SQL migrations, applied under a PostgreSQL advisory lock.

Files ``NNNN_name.sql`` in ``migrations/`` are applied in order, each in its own
transaction, and recorded in ``schema_migrations`` with a checksum. Several
instances starting at once queue on the lock; the first applies, the others
find nothing left to do. A recorded migration whose file has changed stops
start-up: history is never rewritten, only extended.

A database without history is set up in one transaction, so a failure leaves
it as it was: empty, or as the reference service left it. That is also where
the reference's database is recognised and adopted (:mod:`.adoption`): its
adoption SQL runs in place of 0001 and is recorded as version 0, 0001 is
recorded as applied (its tables are the reference's, brought to its shape),
and 0003 onwards apply as written.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from importlib import resources

import asyncpg

from .adoption import ADOPTION_PREFIX, recognise

log = logging.getLogger(__name__)

#: Arbitrary but fixed key for ``pg_advisory_lock``: "exobrain" in ASCII.
MIGRATION_LOCK_KEY = 0x65786F627261696E


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


class MigrationError(RuntimeError):
    """The database's recorded history disagrees with the migration files."""


def available_migrations() -> list[Migration]:
    found = []
    for entry in resources.files(__package__).joinpath("migrations").iterdir():
        if entry.name.endswith(".sql") and not entry.name.startswith(ADOPTION_PREFIX):
            version, _, name = entry.name.removesuffix(".sql").partition("_")
            found.append(Migration(int(version), name, entry.read_text(encoding="utf-8")))
    return sorted(found, key=lambda migration: migration.version)


async def migrate(dsn: str) -> list[Migration]:
    """Apply every pending migration; return the ones this call applied."""
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_KEY)
        try:
            return await _apply_pending(connection)
        finally:
            await connection.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_KEY)
    finally:
        await connection.close()


async def _apply_pending(connection: asyncpg.Connection) -> list[Migration]:
    recorded = await _recorded(connection)
    if recorded:
        return await _apply(connection, recorded)
    async with connection.transaction():
        await connection.execute(
            """
            CREATE TABLE IF NOT EXISTS schema_migrations (
                version     integer PRIMARY KEY,
                name        text NOT NULL,
                checksum    text NOT NULL,
                applied_at  timestamptz NOT NULL DEFAULT now()
            )
            """
        )
        reference = await recognise(connection)
        if reference is None:
            return await _apply(connection, {})
        adoption = Migration(0, *reference.adoption)
        try:
            await connection.execute(adoption.sql)
        except asyncpg.IntegrityConstraintViolationError as exc:
            raise MigrationError(
                f"the reference's data breaks a rule of this schema, so nothing was changed: "
                f"{exc}{f' ({exc.detail})' if exc.detail else ''}"
            ) from exc
        initial = available_migrations()[0]
        for migration in (adoption, initial):
            await _record(connection, migration)
        log.info("adopted the reference service's database (%s)", adoption.name)
        return [adoption, *await _apply(connection, {initial.version: initial.checksum})]


async def _recorded(connection: asyncpg.Connection) -> dict[int, str]:
    if not await connection.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL"):
        return {}
    rows = await connection.fetch("SELECT version, checksum FROM schema_migrations")
    return {row["version"]: row["checksum"] for row in rows}


async def _apply(connection: asyncpg.Connection, recorded: dict[int, str]) -> list[Migration]:
    applied = []
    for migration in available_migrations():
        if migration.version in recorded:
            if recorded[migration.version] != migration.checksum:
                raise MigrationError(
                    f"migration {migration.version:04d}_{migration.name} changed after it was "
                    "applied; add a new migration instead"
                )
            continue
        async with connection.transaction():
            await connection.execute(migration.sql)
            await _record(connection, migration)
        log.info("applied migration %04d_%s", migration.version, migration.name)
        applied.append(migration)
    return applied


async def _record(connection: asyncpg.Connection, migration: Migration) -> None:
    await connection.execute(
        "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
        migration.version,
        migration.name,
        migration.checksum,
    )
