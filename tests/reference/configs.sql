-- The reference's user-config tables after its migrations 007 and 008 (008 added
-- the display name), written from their facts. Stored values are {"kind", "value"}
-- objects whose kind is the definition's type.

CREATE TABLE user_config_definitions (
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    key text NOT NULL,
    description text NOT NULL,
    config_type text NOT NULL,
    default_value jsonb NOT NULL,
    display_order integer NOT NULL DEFAULT 0,
    is_active boolean NOT NULL DEFAULT true,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    name text NOT NULL,
    PRIMARY KEY (id),
    CONSTRAINT user_config_definitions_type_check CHECK (config_type IN ('boolean', 'choice')),
    CONSTRAINT user_config_definitions_default_value_shape_check CHECK (
        default_value ->> 'kind' = config_type
        AND jsonb_typeof(default_value -> 'value')
            = CASE config_type WHEN 'boolean' THEN 'boolean' ELSE 'string' END
    )
);
CREATE UNIQUE INDEX user_config_definitions_key_unique ON user_config_definitions (key);
CREATE INDEX idx_user_config_definitions_active_order
    ON user_config_definitions (is_active, display_order, key);

CREATE TABLE user_config_choice_options (
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    definition_id uuid NOT NULL,
    option_value text NOT NULL,
    option_label text NOT NULL,
    display_order integer NOT NULL DEFAULT 0,
    is_active boolean NOT NULL DEFAULT true,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (id),
    CONSTRAINT user_config_choice_options_non_empty_value_check CHECK (trim(option_value) <> '')
);
ALTER TABLE user_config_choice_options ADD CONSTRAINT user_config_choice_options_definition_id_fkey
    FOREIGN KEY (definition_id) REFERENCES user_config_definitions (id);
CREATE UNIQUE INDEX user_config_choice_options_definition_value_unique
    ON user_config_choice_options (definition_id, option_value);

CREATE TABLE user_config_values (
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    user_id uuid NOT NULL,
    definition_id uuid NOT NULL,
    value jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (id),
    CONSTRAINT user_config_values_value_shape_check CHECK (
        value ->> 'kind' IN ('boolean', 'choice')
        AND jsonb_typeof(value -> 'value')
            = CASE value ->> 'kind' WHEN 'boolean' THEN 'boolean' ELSE 'string' END
    )
);
ALTER TABLE user_config_values ADD CONSTRAINT user_config_values_user_id_fkey
    FOREIGN KEY (user_id) REFERENCES users (id);
ALTER TABLE user_config_values ADD CONSTRAINT user_config_values_definition_id_fkey
    FOREIGN KEY (definition_id) REFERENCES user_config_definitions (id);
CREATE UNIQUE INDEX user_config_values_user_definition_unique
    ON user_config_values (user_id, definition_id);
CREATE INDEX idx_user_config_values_definition ON user_config_values (definition_id);
