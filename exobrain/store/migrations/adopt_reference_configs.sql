-- With adopt_reference.sql, on a database the reference's migrations 007-008 reached:
-- its user-config tables are already the ones 0007 creates, but for deletes, which
-- cascade here as everywhere in this schema. Same names, nothing dropped.
ALTER TABLE user_config_choice_options
    DROP CONSTRAINT user_config_choice_options_definition_id_fkey,
    ADD CONSTRAINT user_config_choice_options_definition_id_fkey
        FOREIGN KEY (definition_id) REFERENCES user_config_definitions (id) ON DELETE CASCADE;

ALTER TABLE user_config_values
    DROP CONSTRAINT user_config_values_user_id_fkey,
    ADD CONSTRAINT user_config_values_user_id_fkey
        FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE,
    DROP CONSTRAINT user_config_values_definition_id_fkey,
    ADD CONSTRAINT user_config_values_definition_id_fkey
        FOREIGN KEY (definition_id) REFERENCES user_config_definitions (id) ON DELETE CASCADE;
