"""Users and their password identities."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import asyncpg

from exobrain.auth import Principal

from .seed import PASSWORD_PROVIDER


@dataclass(frozen=True, slots=True)
class PasswordIdentity:
    user: Principal
    password_hash: str | None


async def find_password_identity(pool: asyncpg.Pool, email: str) -> PasswordIdentity | None:
    """The user who logs in with ``email`` (any case), with their password hash."""
    row = await pool.fetchrow(
        """
        SELECT u.id, u.email, u.name, i.password_hash
        FROM identities i JOIN users u ON u.id = i.user_id
        WHERE i.provider = $1 AND i.provider_subject = lower($2)
        """,
        PASSWORD_PROVIDER,
        email,
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
