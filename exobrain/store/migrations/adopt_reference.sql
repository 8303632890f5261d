-- Stands in for 0001_initial.sql on a database the reference service created
-- (exobrain/store/adoption.py recognised it): its users, identities, journals,
-- messages and tool calls become what 0001 creates, every row kept. Nothing of the
-- reference is dropped or renamed, so it can still read every journal: columns are
-- added, messages.sequence widened to bigint, defaults and NOT NULLs set, foreign
-- keys replaced by their cascading form under the same name, and its indexes (and
-- its unused messages.content_json) left beside ours.

-- A column's type cannot change under a view, and Reshape's last migration schema
-- has a view over every table: the views on messages.sequence are set aside here
-- and created again at the end as they were, with their owners and grants.
CREATE TEMPORARY TABLE adopted_views ON COMMIT DROP AS
SELECT DISTINCT v.oid::regclass::text AS name, pg_get_viewdef(v.oid) AS definition,
       pg_get_userbyid(v.relowner) AS owner, v.relacl AS grants
FROM pg_depend AS d
JOIN pg_rewrite AS r ON r.oid = d.objid
JOIN pg_class AS v ON v.oid = r.ev_class
JOIN pg_attribute AS a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
WHERE d.classid = 'pg_rewrite'::regclass AND d.refobjid = 'messages'::regclass
  AND a.attname = 'sequence' AND v.oid <> 'messages'::regclass;
DO $$
DECLARE
    v record;
BEGIN
    FOR v IN SELECT name FROM adopted_views LOOP
        EXECUTE format('DROP VIEW %s', v.name);
    END LOOP;
END $$;

-- Logins match emails in any case, as 0001's unique index does.
CREATE UNIQUE INDEX users_email_key ON users (lower(email));

ALTER TABLE identities
    DROP CONSTRAINT identities_user_id_fkey,
    ADD CONSTRAINT identities_user_id_fkey
        FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE;

ALTER TABLE conversations
    DROP CONSTRAINT conversations_user_id_fkey,
    ADD CONSTRAINT conversations_user_id_fkey
        FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE,
    ADD CONSTRAINT conversations_reference_check CHECK (reference ~ '^\d{4}/\d{2}/\d{2}$'),
    ADD COLUMN status text NOT NULL DEFAULT 'active',
    ADD COLUMN last_sequence bigint NOT NULL DEFAULT 0,
    ADD COLUMN message_count integer NOT NULL DEFAULT 0,
    ADD COLUMN last_message_at timestamptz;

-- The reference numbered a journal's messages MAX(sequence) + 1 without a lock, so
-- two writers could share a number. Journals become gap-free 1..n in the order the
-- reference shows them (sequence, then time, then id), which leaves journals already
-- numbered so untouched. Messages without user_id (the column allowed it) belong to
-- their journal's owner; metadata the reference never wrote becomes {}.
UPDATE messages AS m
SET sequence = n.sequence,
    user_id = coalesce(m.user_id, n.owner),
    metadata = coalesce(m.metadata, '{}'::jsonb)
FROM (
    SELECT m.id, c.user_id AS owner,
           row_number() OVER (PARTITION BY m.conversation_id
                              ORDER BY m.sequence, m.created_at, m.id) AS sequence
    FROM messages AS m JOIN conversations AS c ON c.id = m.conversation_id
) AS n
WHERE m.id = n.id
  AND (m.sequence <> n.sequence OR m.user_id IS NULL OR m.metadata IS NULL);

ALTER TABLE messages
    DROP CONSTRAINT messages_conversation_id_fkey,
    ADD CONSTRAINT messages_conversation_id_fkey
        FOREIGN KEY (conversation_id) REFERENCES conversations (id) ON DELETE CASCADE,
    DROP CONSTRAINT messages_user_id_fkey,
    ADD CONSTRAINT messages_user_id_fkey
        FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE,
    ALTER COLUMN sequence TYPE bigint,
    ALTER COLUMN user_id SET NOT NULL,
    ALTER COLUMN content SET NOT NULL,
    ALTER COLUMN metadata SET DEFAULT '{}'::jsonb,
    ALTER COLUMN metadata SET NOT NULL,
    ADD CONSTRAINT messages_role_check CHECK (role IN ('user', 'assistant', 'system', 'tool')),
    ADD CONSTRAINT messages_sequence_check CHECK (sequence > 0),
    ADD CONSTRAINT messages_conversation_sequence_key UNIQUE (conversation_id, sequence),
    ADD COLUMN search_vector tsvector
        GENERATED ALWAYS AS (to_tsvector('simple', content)) STORED;
-- The reference's unique index on (conversation_id, client_message_id) already is
-- 0001's messages_conversation_client_message_key in all but name.
CREATE INDEX messages_search_idx ON messages USING gin (search_vector);
-- As 0001 left it: 0004 derives the watermarks from the reference's flags and drops it.
CREATE INDEX messages_uncommitted_idx ON messages (user_id, conversation_id, sequence)
    WHERE NOT committed_to_knowledge_base;

-- The counters journal_append (0005) continues from.
UPDATE conversations AS c
SET last_sequence = s.last_sequence, message_count = s.message_count,
    last_message_at = s.last_message_at
FROM (
    SELECT conversation_id, max(sequence) AS last_sequence, count(*) AS message_count,
           max(created_at) AS last_message_at
    FROM messages GROUP BY conversation_id
) AS s
WHERE c.id = s.conversation_id;

-- The reference ordered a message's tool calls by time, then id; 0001 by position.
ALTER TABLE tool_calls
    DROP CONSTRAINT tool_calls_message_id_fkey,
    ADD CONSTRAINT tool_calls_message_id_fkey
        FOREIGN KEY (message_id) REFERENCES messages (id) ON DELETE CASCADE,
    ALTER COLUMN description SET DEFAULT '',
    ADD COLUMN position integer NOT NULL DEFAULT 0;
UPDATE tool_calls AS t
SET position = n.position
FROM (
    SELECT id, row_number() OVER (PARTITION BY message_id ORDER BY created_at, id) - 1 AS position
    FROM tool_calls
) AS n
WHERE t.id = n.id AND n.position > 0;
CREATE INDEX tool_calls_message_idx ON tool_calls (message_id, position);

-- The outbox as 0001 creates it (0003 then adds its position).
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

DO $$
DECLARE
    v record;
    g record;
BEGIN
    FOR v IN SELECT * FROM adopted_views LOOP
        EXECUTE format('CREATE VIEW %s AS %s', v.name, v.definition);
        EXECUTE format('ALTER VIEW %s OWNER TO %I', v.name, v.owner);
        FOR g IN SELECT * FROM aclexplode(v.grants) LOOP
            EXECUTE format('GRANT %s ON %s TO %s%s', g.privilege_type, v.name,
                           CASE g.grantee WHEN 0 THEN 'PUBLIC'
                                ELSE quote_ident(pg_get_userbyid(g.grantee)) END,
                           CASE WHEN g.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END);
        END LOOP;
    END LOOP;
END $$;
