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

-- journal_append with the fence: an item carrying "f" (its writer's epoch) is written
-- only while that epoch is the user's current one. FOR SHARE on the owner rows makes a
-- takeover (an UPDATE of the epoch) wait for the writes that passed the check, so
-- "checked" and "written" cannot be told apart by anyone else. A stale epoch fails the
-- batch with check_violation on the constraint name chat_owner_epoch; the JournalActor
-- then writes journal by journal, so only that journal's writers are refused.
CREATE FUNCTION journal_append_fenced(batch jsonb)
RETURNS TABLE (item integer, id uuid, conversation_id uuid, sequence bigint,
               created_at timestamptz, client_message_id uuid, duplicate boolean)
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM 1 FROM chat_owners AS o
    WHERE o.user_id IN (SELECT (e->>'u')::uuid FROM jsonb_array_elements(batch) AS e
                        WHERE e ? 'f')
    ORDER BY o.user_id
    FOR SHARE;
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
