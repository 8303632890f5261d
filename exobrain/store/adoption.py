"""Recognising a database the reference service created, and adopting it in place.

The reference (a FastAPI service) kept its data in the same PostgreSQL tables,
made by its Reshape migrations: 001-006 (users, identities, conversations,
messages, tool_calls), and in its newest version 007-008 (user configs). Its
LangGraph agent added checkpoint tables beside them. ``migrate`` consults
:func:`recognise` on a database without migration history, before 0001 would
fail on ``relation "users" already exists``:

- none of the tables either service creates: a new install;
- exactly the reference's tables with exactly their columns and types, and
  Reshape (when its ``reshape`` schema is there) idle: the reference, adopted
  by running ``adopt_reference.sql`` (plus ``adopt_reference_configs.sql`` with
  the config tables) in place of 0001, in the transaction that then applies
  0003 onwards as written (0004 derives the knowledge watermarks from the
  reference's flags; 0007 keeps its config tables);
- anything else: :class:`UnrecognisedSchema` naming what was found, nothing
  changed.

Nothing of the reference is dropped or renamed, so it can still read every
journal during a staged cutover; the LangGraph tables are not touched (they
may be dropped once the cutover is final).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

from .pool import Connection

#: Columns and their types (as ``format_type`` names them), by table.
Tables = dict[str, dict[str, str]]

_UUID, _TEXT, _TIME = "uuid", "text", "timestamp with time zone"
_JSONB, _INT, _BOOL = "jsonb", "integer", "boolean"

#: The reference's tables after its migration 006, column by column.
REFERENCE_TABLES: Tables = {
    "users": {"id": _UUID, "name": _TEXT, "email": _TEXT, "created_at": _TIME, "updated_at": _TIME},
    "identities": {
        "id": _UUID,
        "user_id": _UUID,
        "provider": _TEXT,
        "provider_subject": _TEXT,
        "password_hash": _TEXT,
        "created_at": _TIME,
    },
    "conversations": {
        "id": _UUID,
        "user_id": _UUID,
        "reference": _TEXT,
        "created_at": _TIME,
        "updated_at": _TIME,
    },
    "messages": {
        "id": _UUID,
        "conversation_id": _UUID,
        "user_id": _UUID,
        "role": _TEXT,
        "content": _TEXT,
        "content_json": _JSONB,
        "created_at": _TIME,
        "client_message_id": _UUID,
        "metadata": _JSONB,
        "sequence": _INT,
        "committed_to_knowledge_base": _BOOL,
    },
    "tool_calls": {
        "id": _UUID,
        "message_id": _UUID,
        "tool_call_id": _TEXT,
        "title": _TEXT,
        "description": _TEXT,
        "response": _TEXT,
        "error": _TEXT,
        "created_at": _TIME,
    },
}

#: The user-config tables its migrations 007 and 008 add.
REFERENCE_CONFIG_TABLES: Tables = {
    "user_config_definitions": {
        "id": _UUID,
        "key": _TEXT,
        "description": _TEXT,
        "config_type": _TEXT,
        "default_value": _JSONB,
        "display_order": _INT,
        "is_active": _BOOL,
        "created_at": _TIME,
        "updated_at": _TIME,
        "name": _TEXT,
    },
    "user_config_choice_options": {
        "id": _UUID,
        "definition_id": _UUID,
        "option_value": _TEXT,
        "option_label": _TEXT,
        "display_order": _INT,
        "is_active": _BOOL,
        "created_at": _TIME,
    },
    "user_config_values": {
        "id": _UUID,
        "user_id": _UUID,
        "definition_id": _UUID,
        "value": _JSONB,
        "created_at": _TIME,
        "updated_at": _TIME,
    },
}

#: Tables only this service creates: finding one means the database is not the reference's.
SERVICE_TABLES = ("knowledge_dispatches", "knowledge_watermarks", "chat_owners", "jobs")

_KNOWN_TABLES = [*REFERENCE_TABLES, *REFERENCE_CONFIG_TABLES, *SERVICE_TABLES]


#: What stands in for 0001 on the reference's database: ``migrations/adopt_*.sql``.
ADOPTION_PREFIX = "adopt_"


class UnrecognisedSchema(RuntimeError):
    """The database has tables of either service, but is not the reference's final schema."""


@dataclass(frozen=True, slots=True)
class ReferenceSchema:
    """The reference's final schema, with or without its user-config tables."""

    with_configs: bool

    @property
    def adoption(self) -> tuple[str, str]:
        """The name and SQL of what stands in for 0001."""
        steps = ("reference", "reference_configs") if self.with_configs else ("reference",)
        names = [ADOPTION_PREFIX + step for step in steps]
        folder = resources.files(__package__).joinpath("migrations")
        parts = [folder.joinpath(f"{name}.sql").read_text(encoding="utf-8") for name in names]
        return names[-1], "\n".join(parts)


async def recognise(connection: Connection) -> ReferenceSchema | None:
    """None for a new install, the reference's schema, or :class:`UnrecognisedSchema`."""
    found: Tables = {}
    for row in await connection.fetch(
        """
        SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod) AS type
        FROM pg_class AS c
        JOIN pg_attribute AS a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
        WHERE c.relnamespace = current_schema()::regnamespace
          AND c.relkind IN ('r', 'p', 'v', 'm', 'f') AND c.relname = ANY($1::text[])
        """,
        _KNOWN_TABLES,
    ):
        found.setdefault(row["relname"], {})[row["attname"]] = row["type"]
    if not found:
        return None
    with_configs = any(table in found for table in REFERENCE_CONFIG_TABLES)
    expected = REFERENCE_TABLES | (REFERENCE_CONFIG_TABLES if with_configs else {})
    problems = _differences(expected, found) + await _reshape_problems(connection)
    if problems:
        raise UnrecognisedSchema(
            f"found tables {', '.join(sorted(found))}, but not as the reference service's "
            "Reshape migrations 001-006 (or 001-008) leave them, so nothing was changed: "
            + "; ".join(problems)
        )
    return ReferenceSchema(with_configs)


def _differences(expected: Tables, found: Tables) -> list[str]:
    missing, extra = sorted(expected.keys() - found.keys()), sorted(found.keys() - expected.keys())
    problems = [f"table {table} is missing" for table in missing]
    problems += [f"table {table} is not the reference's" for table in extra]
    for table, columns in expected.items():
        present = found.get(table, columns)
        for column, kind in columns.items():
            if column not in present:
                problems.append(f"{table}.{column} ({kind}) is missing")
            elif present[column] != kind:
                problems.append(f"{table}.{column} is {present[column]}, not {kind}")
        unknown = sorted(present.keys() - columns.keys())
        problems += [f"{table}.{column} is not the reference's" for column in unknown]
    return problems


async def _reshape_problems(connection: Connection) -> list[str]:
    """A Reshape migration under way has triggers and temporary columns of its own."""
    if not await connection.fetchval("SELECT to_regclass('reshape.data') IS NOT NULL"):
        return []
    state = await connection.fetchval(
        "SELECT value ->> 'state' FROM reshape.data WHERE key = 'state'"
    )
    if state in (None, "idle"):
        return []
    return [f"a Reshape migration is {state.replace('_', ' ')}: complete or abort it first"]
