-- Per-user settings (GET/PATCH /api/users/me/configs): definitions with their choice
-- options, and each user's overrides. The tables have the reference service's shape,
-- so a rollback keeps every user's settings, and a database adopted from a reference
-- that already had them (its migrations 007-008) keeps its own: hence IF NOT EXISTS,
-- the reference's index names, and the definition added only where it is missing.
-- Values are {"kind": config_type, "value": ...}; a user without an override row
-- uses the default.

CREATE TABLE IF NOT EXISTS user_config_definitions (
    id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    key            text NOT NULL,
    description    text NOT NULL,
    config_type    text NOT NULL CONSTRAINT user_config_definitions_type_check
                   CHECK (config_type IN ('boolean', 'choice')),
    default_value  jsonb NOT NULL,
    display_order  integer NOT NULL DEFAULT 0,
    is_active      boolean NOT NULL DEFAULT true,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    name           text NOT NULL,
    CONSTRAINT user_config_definitions_default_value_shape_check CHECK (
        default_value ->> 'kind' = config_type
        AND jsonb_typeof(default_value -> 'value')
            = CASE config_type WHEN 'boolean' THEN 'boolean' ELSE 'string' END
    )
);
CREATE UNIQUE INDEX IF NOT EXISTS user_config_definitions_key_unique
    ON user_config_definitions (key);

CREATE TABLE IF NOT EXISTS user_config_choice_options (
    id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    definition_id  uuid NOT NULL REFERENCES user_config_definitions (id) ON DELETE CASCADE,
    option_value   text NOT NULL CONSTRAINT user_config_choice_options_non_empty_value_check
                   CHECK (trim(option_value) <> ''),
    option_label   text NOT NULL,
    display_order  integer NOT NULL DEFAULT 0,
    is_active      boolean NOT NULL DEFAULT true,
    created_at     timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX IF NOT EXISTS user_config_choice_options_definition_value_unique
    ON user_config_choice_options (definition_id, option_value);

CREATE TABLE IF NOT EXISTS user_config_values (
    id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id        uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    definition_id  uuid NOT NULL REFERENCES user_config_definitions (id) ON DELETE CASCADE,
    value          jsonb NOT NULL CONSTRAINT user_config_values_value_shape_check CHECK (
                       value ->> 'kind' IN ('boolean', 'choice')
                       AND jsonb_typeof(value -> 'value')
                           = CASE value ->> 'kind' WHEN 'boolean' THEN 'boolean' ELSE 'string' END
                   ),
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX IF NOT EXISTS user_config_values_user_definition_unique
    ON user_config_values (user_id, definition_id);

-- What the newest reference frontend reads: its theme, one of the two it ships.
WITH theme AS (
    INSERT INTO user_config_definitions (key, name, description, config_type, default_value,
                                         display_order)
    VALUES ('frontend.theme', 'Theme', 'The colour scheme of the assistant''s web interface',
            'choice', '{"kind": "choice", "value": "gruvbox-dark"}', 10)
    ON CONFLICT (key) DO NOTHING
    RETURNING id
)
INSERT INTO user_config_choice_options (definition_id, option_value, option_label, display_order)
SELECT theme.id, option.value, option.label, option.display_order
FROM theme CROSS JOIN (VALUES ('gruvbox-dark', 'Gruvbox Dark', 10),
                              ('purple-intelligence', 'Purple Intelligence', 20))
                      AS option (value, label, display_order);
