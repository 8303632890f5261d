-- Users, identities, daily conversations (journals), messages, tool calls and the
-- knowledge-dispatch outbox (DESIGN.md §6).

CREATE TABLE users (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    email       text NOT NULL,
    name        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX users_email_key ON users (lower(email));

CREATE TABLE identities (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id           uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    provider          text NOT NULL,
    provider_subject  text NOT NULL,
    password_hash     text,
    created_at        timestamptz NOT NULL DEFAULT now(),
    UNIQUE (provider, provider_subject)
);
CREATE INDEX identities_user_id_idx ON identities (user_id);

-- One journal per user and UTC day. last_sequence is the per-conversation
-- sequence counter: writers take it with UPDATE ... RETURNING, so the row lock
-- serialises concurrent appends, across processes too.
CREATE TABLE conversations (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id          uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    reference        text NOT NULL CHECK (reference ~ '^\d{4}/\d{2}/\d{2}$'),
    status           text NOT NULL DEFAULT 'active',
    last_sequence    bigint NOT NULL DEFAULT 0,
    message_count    integer NOT NULL DEFAULT 0,
    last_message_at  timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (user_id, reference)
);

CREATE TABLE messages (
    id                           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    conversation_id              uuid NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    user_id                      uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role                         text NOT NULL CHECK (role IN ('user', 'assistant', 'system', 'tool')),
    content                      text NOT NULL,
    sequence                     bigint NOT NULL CHECK (sequence > 0),
    client_message_id            uuid,
    metadata                     jsonb NOT NULL DEFAULT '{}'::jsonb,
    committed_to_knowledge_base  boolean NOT NULL DEFAULT false,
    created_at                   timestamptz NOT NULL DEFAULT now(),
    search_vector                tsvector GENERATED ALWAYS AS (to_tsvector('simple', content)) STORED,
    CONSTRAINT messages_conversation_sequence_key UNIQUE (conversation_id, sequence),
    CONSTRAINT messages_conversation_client_message_key UNIQUE (conversation_id, client_message_id)
);
CREATE INDEX messages_search_idx ON messages USING gin (search_vector);
CREATE INDEX messages_uncommitted_idx ON messages (user_id, conversation_id, sequence)
    WHERE NOT committed_to_knowledge_base;

CREATE TABLE tool_calls (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    message_id    uuid NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    tool_call_id  text NOT NULL,
    title         text NOT NULL,
    description   text NOT NULL DEFAULT '',
    response      text,
    error         text,
    position      integer NOT NULL DEFAULT 0,
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX tool_calls_message_idx ON tool_calls (message_id, position);

-- One row per knowledge-update chunk. Written in the same transaction that marks
-- its messages committed; the dispatcher enqueues pending rows (row id as the
-- idempotency key) and records the job id, so "committed" and "enqueued" can
-- never disagree after a crash.
CREATE TABLE knowledge_dispatches (
    id                 uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id            uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    journal_reference  text NOT NULL,
    message_ids        uuid[] NOT NULL,
    part               integer NOT NULL DEFAULT 0,
    payload            jsonb NOT NULL,
    estimated_tokens   integer NOT NULL,
    status             text NOT NULL DEFAULT 'pending'
                       CHECK (status IN ('pending', 'enqueued', 'failed')),
    job_id             text,
    attempts           integer NOT NULL DEFAULT 0,
    last_error         text,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX knowledge_dispatches_pending_idx ON knowledge_dispatches (created_at)
    WHERE status = 'pending';
CREATE INDEX knowledge_dispatches_user_idx ON knowledge_dispatches (user_id, created_at DESC);
