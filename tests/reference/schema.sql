-- The reference service's tables after its Reshape migrations 001-006, with the
-- names Reshape and PostgreSQL give their keys ("<table>_<column>_fkey"), written
-- from the migrations' facts. Reshape's bookkeeping and views are added by
-- database.py, which knows which migration was the last.

CREATE TABLE users (
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    name text NOT NULL,
    email text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (id)
);
CREATE UNIQUE INDEX users_email_unique ON users (email);

CREATE TABLE identities (
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    user_id uuid NOT NULL,
    provider text NOT NULL,
    provider_subject text NOT NULL,
    password_hash text,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (id)
);
ALTER TABLE identities ADD CONSTRAINT identities_user_id_fkey
    FOREIGN KEY (user_id) REFERENCES users (id);
CREATE UNIQUE INDEX identities_provider_subject_unique ON identities (provider, provider_subject);
CREATE INDEX idx_identities_user_id ON identities (user_id);

CREATE TABLE conversations (
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    user_id uuid NOT NULL,
    reference text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (id)
);
ALTER TABLE conversations ADD CONSTRAINT conversations_user_id_fkey
    FOREIGN KEY (user_id) REFERENCES users (id);
CREATE UNIQUE INDEX conversations_user_reference_unique ON conversations (user_id, reference);

-- Columns in the order the migrations added them: 002, then sequence (003, whose
-- default 004 removed), then the knowledge flag (006).
CREATE TABLE messages (
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    conversation_id uuid NOT NULL,
    user_id uuid,
    role text NOT NULL,
    content text,
    content_json jsonb,
    created_at timestamptz NOT NULL DEFAULT now(),
    client_message_id uuid,
    metadata jsonb,
    sequence integer NOT NULL,
    committed_to_knowledge_base boolean NOT NULL DEFAULT false,
    PRIMARY KEY (id)
);
ALTER TABLE messages ADD CONSTRAINT messages_conversation_id_fkey
    FOREIGN KEY (conversation_id) REFERENCES conversations (id);
ALTER TABLE messages ADD CONSTRAINT messages_user_id_fkey
    FOREIGN KEY (user_id) REFERENCES users (id);
CREATE INDEX idx_messages_conversation_created ON messages (conversation_id, created_at);
CREATE UNIQUE INDEX messages_conversation_client_message_id_unique
    ON messages (conversation_id, client_message_id);
CREATE INDEX idx_messages_conversation_sequence_desc ON messages (conversation_id, sequence);
CREATE INDEX idx_messages_user_commit_status ON messages (user_id, committed_to_knowledge_base);

CREATE TABLE tool_calls (
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    message_id uuid NOT NULL,
    tool_call_id text NOT NULL,
    title text NOT NULL,
    description text NOT NULL,
    response text,
    error text,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (id)
);
ALTER TABLE tool_calls ADD CONSTRAINT tool_calls_message_id_fkey
    FOREIGN KEY (message_id) REFERENCES messages (id);
CREATE INDEX idx_tool_calls_message_created ON tool_calls (message_id, created_at);

-- What the reference's LangGraph agent creates at its first start (its checkpointer's
-- setup), outside the migrations.
CREATE TABLE checkpoint_migrations (v integer PRIMARY KEY);
CREATE TABLE checkpoints (
    thread_id text NOT NULL,
    checkpoint_ns text NOT NULL DEFAULT '',
    checkpoint_id text NOT NULL,
    parent_checkpoint_id text,
    type text,
    checkpoint jsonb NOT NULL,
    metadata jsonb NOT NULL DEFAULT '{}',
    PRIMARY KEY (thread_id, checkpoint_ns, checkpoint_id)
);
CREATE TABLE checkpoint_blobs (
    thread_id text NOT NULL,
    checkpoint_ns text NOT NULL DEFAULT '',
    channel text NOT NULL,
    version text NOT NULL,
    type text NOT NULL,
    blob bytea,
    PRIMARY KEY (thread_id, checkpoint_ns, channel, version)
);
CREATE TABLE checkpoint_writes (
    thread_id text NOT NULL,
    checkpoint_ns text NOT NULL DEFAULT '',
    checkpoint_id text NOT NULL,
    task_id text NOT NULL,
    idx integer NOT NULL,
    channel text NOT NULL,
    type text,
    blob bytea NOT NULL,
    task_path text NOT NULL DEFAULT '',
    PRIMARY KEY (thread_id, checkpoint_ns, checkpoint_id, task_id, idx)
);
