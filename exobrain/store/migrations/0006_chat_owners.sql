-- One owner per user across instances (DESIGN.md §10). The lease itself lives in
-- Redis (TTL, heartbeat); this row is its fencing token: every takeover raises the
-- user's epoch here, and an owner's durable writes carry the epoch it acquired, so
-- an ex-owner that paused past its lease can never write after losing it.
CREATE TABLE chat_owners (
    user_id uuid PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    epoch bigint NOT NULL,
    instance text NOT NULL,
    acquired_at timestamptz NOT NULL DEFAULT now()
);

-- The lock a takeover holds exclusively while it raises a user's epoch, and a fenced
-- write holds shared from its check to its commit: transaction-scoped advisory locks,
-- kept in the lock manager's memory (a row lock would write the owner row every time).
CREATE FUNCTION chat_owner_lock_key(user_id uuid) RETURNS integer
LANGUAGE sql IMMUTABLE AS $$ SELECT hashtext(user_id::text) $$;

-- journal_append with the fence: an item carrying "f" (its writer's epoch) is written
-- only while that epoch is the user's current one. The shared lock makes a takeover
-- wait for the writes that passed the check, so "checked" and "written" cannot be told
-- apart by anyone else. A stale epoch fails the batch with check_violation on the
-- constraint name chat_owner_epoch; the JournalActor then writes journal by journal,
-- so only that journal's writers are refused.
CREATE FUNCTION journal_append_fenced(batch jsonb)
RETURNS TABLE (item integer, id uuid, conversation_id uuid, sequence bigint,
               created_at timestamptz, client_message_id uuid, duplicate boolean)
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM pg_advisory_xact_lock_shared(1164535650, chat_owner_lock_key(f.user_id))
    FROM (SELECT DISTINCT (e->>'u')::uuid AS user_id FROM jsonb_array_elements(batch) AS e
          WHERE e ? 'f' ORDER BY 1) AS f;
    IF EXISTS (
        SELECT 1 FROM jsonb_array_elements(batch) AS e
        LEFT JOIN chat_owners AS o ON o.user_id = (e->>'u')::uuid
        WHERE e ? 'f' AND o.epoch IS DISTINCT FROM (e->>'f')::bigint
    ) THEN
        RAISE EXCEPTION 'the chat session lost its ownership of the user'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'chat_owner_epoch';
    END IF;
    RETURN QUERY SELECT * FROM journal_append(batch);
END;
$$;
