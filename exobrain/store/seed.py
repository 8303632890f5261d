"""Idempotent development data: two users and a few past journals.

Running it again changes nothing: users and identities are matched by email,
and a journal that already exists is left as it is.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import asyncpg

from exobrain.auth import hash_password

from .users import ensure_password_user

SEED_PASSWORD = "password123"  # noqa: S105 - documented development login
_IDS = uuid.UUID("6f1d3c3e-8a0b-4c55-9d0e-2a7f1c9b5e10")  # namespace for stable seed ids


@dataclass(frozen=True, slots=True)
class SeedToolCall:
    tool_call_id: str
    title: str
    description: str
    response: str


@dataclass(frozen=True, slots=True)
class SeedMessage:
    role: str
    content: str
    tool_calls: tuple[SeedToolCall, ...] = field(default=())


SEED_USERS = (
    ("test.user@exobrain.local", "Test User"),
    ("architect@exobrain.local", "Architect User"),
)

SEED_JOURNALS: dict[str, tuple[SeedMessage, ...]] = {
    "2025/01/14": (
        SeedMessage("user", "Started reading about spaced repetition. Can you help me plan?"),
        SeedMessage(
            "assistant",
            "Happy to. A simple plan:\n\n1. Pick one deck of at most 20 cards.\n"
            "2. Review daily for ten minutes.\n3. Check retention after a week.\n\n"
            "What subject is the deck for?",
        ),
        SeedMessage("user", "Mostly Spanish vocabulary, and some statistics formulas."),
        SeedMessage(
            "assistant",
            "Then keep two decks. For formulas, write the card as a question, e.g. "
            "*what is the variance of a Bernoulli variable?* with the answer $p(1-p)$.",
        ),
    ),
    "2025/01/19": (
        SeedMessage("user", "What did the latest research say about sleep and memory?"),
        SeedMessage(
            "assistant",
            "Studies consistently find that sleep after learning helps consolidation; "
            "slow-wave sleep matters most for facts. I looked up a recent review for you.",
            (
                SeedToolCall(
                    "call_seed_web_search",
                    "Web search",
                    "Searching the web for sleep memory consolidation review",
                    "Found 3 candidate sources",
                ),
            ),
        ),
    ),
    "2025/02/03": (
        SeedMessage("user", "Note: the architecture review moved to Thursday."),
        SeedMessage(
            "assistant",
            "Noted: architecture review on Thursday. Want a checklist to prepare?",
        ),
    ),
}


async def seed(connection: asyncpg.Connection) -> None:
    """Insert whatever part of the seed data is missing."""
    password_hash = hash_password(SEED_PASSWORD)
    user_ids = {}
    async with connection.transaction():
        for email, name in SEED_USERS:
            user_ids[email] = await ensure_password_user(connection, email, name, password_hash)
    journal_owner = user_ids[SEED_USERS[0][0]]
    for reference, messages in SEED_JOURNALS.items():
        async with connection.transaction():
            await _ensure_journal(connection, journal_owner, reference, messages)


async def _ensure_journal(
    connection: asyncpg.Connection,
    user_id: uuid.UUID,
    reference: str,
    messages: tuple[SeedMessage, ...],
) -> None:
    day = datetime.strptime(reference, "%Y/%m/%d").replace(hour=9, tzinfo=UTC)
    times = [day + timedelta(minutes=3 * index) for index in range(len(messages))]
    conversation_id = await connection.fetchval(
        """
        INSERT INTO conversations (user_id, reference, last_sequence, message_count,
                                   last_message_at, created_at, updated_at)
        VALUES ($1, $2, $3, $4, $5, $6, $5)
        ON CONFLICT (user_id, reference) DO NOTHING RETURNING id
        """,
        user_id,
        reference,
        len(messages),
        len(messages),
        times[-1],
        times[0],
    )
    if conversation_id is None:
        return
    for sequence, (message, created_at) in enumerate(zip(messages, times, strict=True), start=1):
        message_id = await connection.fetchval(
            """
            INSERT INTO messages (conversation_id, user_id, role, content, sequence,
                                  client_message_id, created_at)
            VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id
            """,
            conversation_id,
            user_id,
            message.role,
            message.content,
            sequence,
            uuid.uuid5(_IDS, f"{user_id}/{reference}/{sequence}"),
            created_at,
        )
        await connection.executemany(
            """
            INSERT INTO tool_calls (message_id, tool_call_id, title, description, response,
                                    position, created_at)
            VALUES ($1, $2, $3, $4, $5, $6, $7)
            """,
            [
                (
                    message_id,
                    call.tool_call_id,
                    call.title,
                    call.description,
                    call.response,
                    position,
                    created_at,
                )
                for position, call in enumerate(message.tool_calls)
            ],
        )
