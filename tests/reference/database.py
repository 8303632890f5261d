"""A database as the reference service leaves it: its schema, Reshape's bookkeeping,
LangGraph's tables, and users, journals, messages, tool calls written its way.

The data carries what the reference did that this service does not: provider
``local`` identities with URL-safe hashes (one user's email in capitals), a
journal whose racing writers numbered two messages alike, a message without
``user_id``, no metadata, tool calls ordered by time, and messages committed
to the knowledge base, one of them out of order.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg

from .passwords import reference_hash_with_both_marks

HERE = Path(__file__).parent

#: The reference's Reshape migrations, by name; the last one names the views' schema.
MIGRATIONS = (
    "001_init_users",
    "002_chat_persistence",
    "003_message_sequence_pagination",
    "004_fix_message_sequence_backfill",
    "005_tool_calls",
    "006_message_knowledge_commit_tracking",
    "007_user_configs",
    "008_user_config_definition_name",
)
REFERENCE_TABLES = ("users", "identities", "conversations", "messages", "tool_calls")
CONFIG_TABLES = ("user_config_definitions", "user_config_choice_options", "user_config_values")
CHECKPOINT_TABLES = (
    "checkpoint_migrations",
    "checkpoints",
    "checkpoint_blobs",
    "checkpoint_writes",
)

PEOPLE = (
    ("Ada Lovelace", "ada@reference.test"),
    ("Grace Hopper", "Grace.Hopper@Reference.test"),
    *((f"Reader {n}", f"reader{n}@reference.test") for n in range(2, 8)),
)
TODAY = None  # stands for today's (UTC) reference in JOURNALS

#: (owner, reference, messages as (role, content, sequence as stored, committed)).
JOURNALS: tuple[tuple[int, str | None, tuple[tuple[str, str, int, bool], ...]], ...] = (
    (
        0,
        "2025/01/14",
        (
            ("user", "Started reading about spaced repetition.", 1, True),
            ("assistant", "A plan: one deck, ten minutes a day.", 2, True),
            ("user", "Mostly Spanish vocabulary.", 3, False),
            ("assistant", "Then keep two decks.", 4, True),  # committed out of order
        ),
    ),
    (
        0,
        "2025/01/19",
        (
            ("user", "What does research say about sleep and memory?", 1, False),
            ("assistant", "Sleep after learning consolidates it.", 2, False),
            ("user", "And naps?", 2, False),  # a racing writer took the same number
            ("assistant", "Short naps help too.", 3, False),
        ),
    ),
    (
        0,
        TODAY,
        (
            ("user", "Good morning.", 1, False),
            ("assistant", "Good morning, Ada.", 2, False),
        ),
    ),
    (
        1,
        "2025/02/17",
        (
            ("user", "Compilers, again.", 1, True),
            ("assistant", "Noted.", 2, True),  # stored without user_id
        ),
    ),
)


@dataclass(frozen=True, slots=True)
class ReferenceUser:
    id: uuid.UUID
    email: str
    name: str
    password: str


@dataclass(frozen=True, slots=True)
class ReferenceMessage:
    id: uuid.UUID
    user: ReferenceUser
    reference: str
    role: str
    content: str
    stored_sequence: int
    committed: bool
    created_at: datetime


@dataclass(frozen=True, slots=True)
class ReferenceData:
    users: tuple[ReferenceUser, ...]
    #: Journal by journal, each in the order the reference shows it.
    messages: tuple[ReferenceMessage, ...]
    #: The two tool calls of the 2025/01/14 plan, the earlier one first (its id sorts last).
    tool_calls: tuple[uuid.UUID, uuid.UUID]
    #: Today's (UTC) reference: the journal a new turn is appended to.
    today: str
    #: The schema of Reshape's last migration, whose views the reference reads.
    views: str

    def journal(self, user: ReferenceUser, reference: str) -> list[ReferenceMessage]:
        return [m for m in self.messages if m.user == user and m.reference == reference]


async def create_reference_database(dsn: str, *, configs: bool = False) -> ReferenceData:
    """Build the reference's final schema (001-006, or 001-008 with ``configs``) in the
    empty database ``dsn`` and fill it."""
    done = MIGRATIONS[: 8 if configs else 6]
    connection = await asyncpg.connect(dsn)
    try:
        async with connection.transaction():
            await connection.execute((HERE / "schema.sql").read_text())
            tables = list(REFERENCE_TABLES)
            if configs:
                await connection.execute((HERE / "configs.sql").read_text())
                tables += CONFIG_TABLES
            await _reshape(connection, done, tables)
            data = await _fill(connection, f"migration_{done[-1]}")
            if configs:
                await _configs(connection, data.users[0])
    finally:
        await connection.close()
    return data


async def _reshape(
    connection: asyncpg.Connection, done: tuple[str, ...], tables: list[str]
) -> None:
    """Reshape's bookkeeping when idle, and its last migration's views over the tables
    (readable by every role, as a deployment's reader role may need them)."""
    schema = f"migration_{done[-1]}"
    await connection.execute(
        f"""
        CREATE SCHEMA reshape;
        CREATE TABLE reshape.data (key text PRIMARY KEY, value jsonb);
        CREATE TABLE reshape.migrations (
            index integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY, name text NOT NULL,
            description text, actions jsonb NOT NULL, completed_at timestamp DEFAULT now()
        );
        INSERT INTO reshape.data VALUES ('version', '"0.7.0"'), ('state', '{{"state": "idle"}}');
        CREATE SCHEMA {schema};
        """  # noqa: S608 - names from MIGRATIONS
    )
    await connection.execute(
        "INSERT INTO reshape.migrations (name, actions) SELECT unnest($1::text[]), '[]'", done
    )
    for table in tables:
        columns = await connection.fetchval(
            "SELECT string_agg(format('%I AS %I', attname, attname), ', ' ORDER BY attnum)"
            " FROM pg_attribute WHERE attrelid = $1::regclass AND attnum > 0",
            f"public.{table}",
        )
        view = f"CREATE VIEW {schema}.{table} AS SELECT {columns} FROM public.{table}"  # noqa: S608
        await connection.execute(view)
        await connection.execute(f"GRANT SELECT ON {schema}.{table} TO PUBLIC")


async def _fill(connection: asyncpg.Connection, views: str) -> ReferenceData:
    users = tuple(
        ReferenceUser(uuid.uuid4(), email, name, f"reference password {n}")
        for n, (name, email) in enumerate(PEOPLE)
    )
    for user in users:
        await connection.execute(
            "INSERT INTO users (id, name, email) VALUES ($1, $2, $3)",
            user.id,
            user.name,
            user.email,
        )
        await connection.execute(
            "INSERT INTO identities (user_id, provider, provider_subject, password_hash)"
            " VALUES ($1, 'local', $2, $3)",
            user.id,
            user.email,
            reference_hash_with_both_marks(user.password),
        )
    now = datetime.now(UTC)
    today = now.strftime("%Y/%m/%d")
    messages: list[ReferenceMessage] = []
    for owner, day, entries in JOURNALS:
        user, reference = users[owner], day or today
        start = now - timedelta(minutes=30) if day is None else _nine_am(day)
        conversation = await connection.fetchval(
            "INSERT INTO conversations (user_id, reference, created_at, updated_at)"
            " VALUES ($1, $2, $3, $3) RETURNING id",
            user.id,
            reference,
            start,
        )
        for minute, (role, content, sequence, committed) in enumerate(entries, start=1):
            message = ReferenceMessage(
                uuid.uuid4(),
                user,
                reference,
                role,
                content,
                sequence,
                committed,
                start + timedelta(minutes=minute),
            )
            messages.append(message)
            without_user = owner == 1 and minute == len(entries)
            await connection.execute(
                """
                INSERT INTO messages (id, conversation_id, user_id, role, content, sequence,
                                      client_message_id, committed_to_knowledge_base, created_at)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                """,
                message.id,
                conversation,
                None if without_user else user.id,
                role,
                content,
                sequence,
                uuid.uuid4(),
                committed,
                message.created_at,
            )
    plan = messages[1]
    earlier, later = uuid.UUID(int=2**128 - 1), uuid.UUID(int=1)
    for call_id, offset, title in ((earlier, 1, "Web search"), (later, 2, "Web fetch")):
        await connection.execute(
            "INSERT INTO tool_calls (id, message_id, tool_call_id, title, description, response,"
            " created_at) VALUES ($1, $2, $3, $4, 'Looking it up', 'Found it', $5)",
            call_id,
            plan.id,
            f"call_{offset}",
            title,
            plan.created_at + timedelta(seconds=offset),
        )
    await connection.execute(
        """
        INSERT INTO checkpoint_migrations SELECT generate_series(0, 9);
        INSERT INTO checkpoints (thread_id, checkpoint_id, checkpoint)
            VALUES ('thread-1', 'checkpoint-1', '{"v": 1}');
        INSERT INTO checkpoint_blobs (thread_id, channel, version, type, blob)
            VALUES ('thread-1', 'messages', '1', 'msgpack', '\\x00');
        INSERT INTO checkpoint_writes (thread_id, checkpoint_id, task_id, idx, channel, blob)
            VALUES ('thread-1', 'checkpoint-1', 'task-1', 0, 'messages', '\\x00');
        """
    )
    return ReferenceData(users, tuple(messages), (earlier, later), today, views)


async def _configs(connection: asyncpg.Connection, user: ReferenceUser) -> None:
    """The reference's theme, a setting of its own, and one user's choice of theme."""
    await connection.execute(
        """
        WITH theme AS (
            INSERT INTO user_config_definitions (key, name, description, config_type,
                                                 default_value, display_order)
            VALUES ('frontend.theme', 'Theme', 'Pick a theme', 'choice',
                    '{"kind": "choice", "value": "gruvbox-dark"}', 10)
            RETURNING id
        )
        INSERT INTO user_config_choice_options (definition_id, option_value, option_label,
                                                display_order)
        SELECT theme.id, v, l, o FROM theme, (VALUES ('gruvbox-dark', 'Gruvbox Dark', 10),
            ('purple-intelligence', 'Purple Intelligence', 20)) AS options (v, l, o);
        INSERT INTO user_config_definitions (key, name, description, config_type,
                                             default_value, display_order)
        VALUES ('journal.compact', 'Compact journal', 'Fewer lines per message', 'boolean',
                '{"kind": "boolean", "value": false}', 20);
        """
    )
    await connection.execute(
        """
        INSERT INTO user_config_values (user_id, definition_id, value)
        SELECT $1, id, '{"kind": "choice", "value": "purple-intelligence"}'
        FROM user_config_definitions WHERE key = 'frontend.theme'
        """,
        user.id,
    )


def _nine_am(reference: str) -> datetime:
    return datetime.strptime(reference, "%Y/%m/%d").replace(hour=9, tzinfo=UTC)
