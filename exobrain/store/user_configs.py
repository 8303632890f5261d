"""Per-user settings: definitions in PostgreSQL (migration 0007), overrides per user.

The tables and their values (``{"kind": config_type, "value": ...}``) are the
reference service's, and so is what an override means: a user has one only
while their value differs from the default, so ``using_default`` is "no row".
An override whose kind no longer matches its definition is ignored.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from typing import Any, Literal

import asyncpg
import orjson

ConfigType = Literal["boolean", "choice"]
ConfigValue = bool | str


@dataclass(frozen=True, slots=True)
class UserConfig:
    """One setting as a user sees it."""

    definition_id: uuid.UUID
    key: str
    name: str
    config_type: ConfigType
    description: str
    #: ``(value, label)`` pairs, in display order; empty for booleans.
    options: tuple[tuple[str, str], ...]
    value: ConfigValue
    default_value: ConfigValue
    using_default: bool

    def as_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "name": self.name,
            "config_type": self.config_type,
            "description": self.description,
            "options": [{"value": value, "label": label} for value, label in self.options],
            "value": self.value,
            "default_value": self.default_value,
            "using_default": self.using_default,
        }

    def with_value(self, value: ConfigValue) -> UserConfig:
        """This setting once the user chose ``value`` (choosing the default drops the override)."""
        return replace(self, value=value, using_default=value == self.default_value)

    def problem_with(self, value: ConfigValue) -> str | None:
        """Why ``value`` cannot be this setting's value, or None when it can."""
        if self.config_type == "boolean":
            return None if isinstance(value, bool) else f"{self.key} must be true or false"
        allowed = [option for option, _ in self.options]
        if isinstance(value, str) and value in allowed:
            return None
        return f"{self.key} must be one of {', '.join(allowed)}"


class InvalidConfigUpdate(ValueError):
    """An update names no setting, or a value the setting does not take."""


async def user_configs(pool: asyncpg.Pool, user_id: uuid.UUID) -> list[UserConfig]:
    """Every active setting with the user's value, in display order."""
    rows = await pool.fetch(
        """
        SELECT d.id, d.key, d.name, d.config_type, d.description,
               d.default_value -> 'value' AS default_value, v.value -> 'value' AS value,
               ARRAY(SELECT ARRAY[o.option_value, o.option_label]
                     FROM user_config_choice_options AS o
                     WHERE o.definition_id = d.id AND o.is_active
                     ORDER BY o.display_order, o.option_value) AS options
        FROM user_config_definitions AS d
        LEFT JOIN user_config_values AS v
               ON v.definition_id = d.id AND v.user_id = $1
              AND v.value ->> 'kind' = d.config_type
        WHERE d.is_active
        ORDER BY d.display_order, d.key
        """,
        user_id,
    )
    return [
        UserConfig(
            definition_id=row["id"],
            key=row["key"],
            name=row["name"],
            config_type=row["config_type"],
            description=row["description"],
            options=tuple((value, label) for value, label in row["options"]),
            value=row["default_value"] if row["value"] is None else row["value"],
            default_value=row["default_value"],
            using_default=row["value"] is None,
        )
        for row in rows
    ]


async def update_user_configs(
    pool: asyncpg.Pool, user_id: uuid.UUID, updates: dict[str, ConfigValue]
) -> list[UserConfig]:
    """Apply every update or none (one statement); the user's settings afterwards.

    Raises :class:`InvalidConfigUpdate` naming the first setting that refuses its value.
    """
    configs = await user_configs(pool, user_id)
    by_key = {config.key: config for config in configs}
    for key, value in updates.items():
        config = by_key.get(key)
        problem = f"unknown config key {key}" if config is None else config.problem_with(value)
        if problem is not None:
            raise InvalidConfigUpdate(problem)
    changed = {key: by_key[key].with_value(value) for key, value in updates.items()}
    await pool.execute(
        """
        WITH incoming AS (
            SELECT * FROM unnest($2::uuid[], $3::text[], $4::boolean[])
                          AS i (definition_id, value, is_default)
        ),
        reset AS (
            DELETE FROM user_config_values AS v USING incoming AS i
            WHERE v.user_id = $1 AND v.definition_id = i.definition_id AND i.is_default
        )
        INSERT INTO user_config_values AS v (user_id, definition_id, value)
        SELECT $1, i.definition_id, i.value::jsonb FROM incoming AS i WHERE NOT i.is_default
        ON CONFLICT (user_id, definition_id)
        DO UPDATE SET value = excluded.value, updated_at = now()
        """,
        user_id,
        [config.definition_id for config in changed.values()],
        [_stored(config) for config in changed.values()],
        [config.using_default for config in changed.values()],
    )
    return [changed.get(config.key, config) for config in configs]


def _stored(config: UserConfig) -> str:
    return orjson.dumps({"kind": config.config_type, "value": config.value}).decode()
