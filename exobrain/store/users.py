"""Users and their password identities."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import asyncpg

from exobrain.auth import Principal

from .pool import Connection

#: Identity providers that log in with a password, the one written first: the reference
#: service's ``local`` (so that after a rollback it logs in users made here too), then
#: ``password``, which this service wrote before it took over the reference's databases.
PASSWORD_PROVIDERS = ("local", "password")


@dataclass(frozen=True, slots=True)
class PasswordIdentity:
    user: Principal
    password_hash: str | None


async def ensure_password_user(
    connection: Connection, email: str, name: str, password_hash: str
) -> uuid.UUID:
    """The user with ``email`` (any case) and a password identity, created if missing."""
    user_id: uuid.UUID = await connection.fetchval(
        """
        WITH inserted AS (
            INSERT INTO users (email, name) VALUES ($1, $2)
            ON CONFLICT (lower(email)) DO NOTHING RETURNING id
        )
        SELECT id FROM inserted UNION ALL SELECT id FROM users WHERE lower(email) = lower($1)
        LIMIT 1
        """,
        email,
        name,
    )
    await connection.execute(
        """
        INSERT INTO identities (user_id, provider, provider_subject, password_hash)
        SELECT $1, ($2::text[])[1], lower($3), $4
        WHERE NOT EXISTS (SELECT 1 FROM identities WHERE user_id = $1 AND provider = ANY($2))
        ON CONFLICT (provider, provider_subject) DO NOTHING
        """,
        user_id,
        PASSWORD_PROVIDERS,
        email,
        password_hash,
    )
    return user_id


async def find_password_identity(pool: asyncpg.Pool, email: str) -> PasswordIdentity | None:
    """The user who logs in with ``email`` (any case), with their password hash.

    Matched by the user's email, as the reference did: its identities' subjects are
    emails as typed. A user with two password identities logs in with the newer.
    """
    row = await pool.fetchrow(
        """
        SELECT u.id, u.email, u.name, i.password_hash
        FROM users u JOIN identities i ON i.user_id = u.id
        WHERE lower(u.email) = lower($1) AND i.provider = ANY($2)
        ORDER BY i.created_at DESC LIMIT 1
        """,
        email,
        PASSWORD_PROVIDERS,
    )
    if row is None:
        return None
    return PasswordIdentity(_principal(row), row["password_hash"])


async def find_user(pool: asyncpg.Pool, user_id: uuid.UUID) -> Principal | None:
    """The user by primary key; None once deleted."""
    return (await find_users(pool, [user_id])).get(user_id)


async def find_users(pool: asyncpg.Pool, user_ids: list[uuid.UUID]) -> dict[uuid.UUID, Principal]:
    """Those of the users that exist, by primary key, in one query."""
    rows = await pool.fetch(
        "SELECT id, email, name FROM users WHERE id = ANY($1::uuid[])", user_ids
    )
    return {row["id"]: _principal(row) for row in rows}


def _principal(row: asyncpg.Record) -> Principal:
    return Principal(row["id"], row["email"], row["name"])
