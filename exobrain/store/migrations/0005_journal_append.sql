-- A batch of journal appends in one round trip. The JournalActor's batch used to
-- be BEGIN, lock the conversations, look up client_message_ids, insert messages,
-- insert tool calls, advance the counters, COMMIT: seven round trips, a third of a
-- chat turn's wait. The function keeps the same two steps with the same locking:
-- first lock (or create) every journal of the batch in (user, reference) order,
-- then, in a second statement whose snapshot is taken after the locks are held
-- (READ COMMITTED: each statement of a function sees what committed before it),
-- everything else. The conversation row lock arbitrates the sequence counter and
-- idempotency across processes: whoever holds it sees every committed
-- client_message_id and the current last_sequence.
--
-- batch: a JSON array of messages in command order, each
--   {"u": user id, "r": reference, "role", "content", "cid": client_message_id or null,
--    "meta": metadata object, "calls": [{"tool_call_id", "title", "description",
--    "response", "error"}, ...] or null}
-- Returns one row per message, in order: the stored row, with duplicate = true when
-- its client_message_id was stored before (or earlier in the same batch).
CREATE FUNCTION journal_append(batch jsonb)
RETURNS TABLE (item integer, id uuid, conversation_id uuid, sequence bigint,
               created_at timestamptz, client_message_id uuid, duplicate boolean)
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    INSERT INTO conversations AS c (user_id, reference)
    SELECT j.user_id, j.reference
    FROM (SELECT DISTINCT (e->>'u')::uuid AS user_id, e->>'r' AS reference
          FROM jsonb_array_elements(batch) AS e) AS j
    ORDER BY j.user_id::text, j.reference
    ON CONFLICT (user_id, reference) DO UPDATE SET updated_at = now();

    RETURN QUERY
    WITH items AS (
        SELECT (x.n - 1)::integer AS item,
               (x.e->>'u')::uuid AS user_id,
               x.e->>'r' AS reference,
               x.e->>'role' AS role,
               x.e->>'content' AS content,
               (x.e->>'cid')::uuid AS client_message_id,
               coalesce(x.e->'meta', '{}'::jsonb) AS metadata,
               x.e->'calls' AS calls
        FROM jsonb_array_elements(batch) WITH ORDINALITY AS x(e, n)
    ),
    placed AS (
        SELECT i.*, c.id AS conv_id, c.last_sequence,
               m.id AS known_id, m.sequence AS known_sequence, m.created_at AS known_at,
               CASE WHEN i.client_message_id IS NULL THEN i.item
                    ELSE min(i.item) OVER (PARTITION BY c.id, i.client_message_id)
               END AS first_item
        FROM items AS i
        JOIN conversations AS c ON c.user_id = i.user_id AND c.reference = i.reference
        LEFT JOIN messages AS m
               ON m.conversation_id = c.id AND m.client_message_id = i.client_message_id
    ),
    fresh AS (
        SELECT p.item, p.conv_id, p.user_id, p.role, p.content, p.client_message_id,
               p.metadata, p.calls, gen_random_uuid() AS new_id,
               p.last_sequence + row_number() OVER (PARTITION BY p.conv_id ORDER BY p.item)
                   AS new_sequence
        FROM placed AS p
        WHERE p.known_id IS NULL AND p.first_item = p.item
    ),
    inserted AS (
        INSERT INTO messages (id, conversation_id, user_id, role, content, sequence,
                              client_message_id, metadata)
        SELECT f.new_id, f.conv_id, f.user_id, f.role, f.content, f.new_sequence,
               f.client_message_id, f.metadata
        FROM fresh AS f
        RETURNING messages.id
    ),
    calls AS (
        INSERT INTO tool_calls (message_id, tool_call_id, title, description, response,
                                error, position)
        SELECT f.new_id, t.call->>'tool_call_id', t.call->>'title',
               coalesce(t.call->>'description', ''), t.call->>'response', t.call->>'error',
               (t.n - 1)::integer
        FROM fresh AS f
        CROSS JOIN LATERAL jsonb_array_elements(coalesce(f.calls, '[]'::jsonb))
             WITH ORDINALITY AS t(call, n)
        RETURNING tool_calls.id
    ),
    counted AS (
        UPDATE conversations AS c
        SET last_sequence = c.last_sequence + d.added,
            message_count = c.message_count + d.added,
            last_message_at = now(), updated_at = now()
        FROM (SELECT f.conv_id, count(*)::integer AS added FROM fresh AS f GROUP BY f.conv_id)
             AS d
        WHERE c.id = d.conv_id
        RETURNING c.id
    )
    SELECT p.item,
           coalesce(p.known_id, f.new_id),
           p.conv_id,
           coalesce(p.known_sequence, f.new_sequence),
           coalesce(p.known_at, now()),
           p.client_message_id,
           p.known_id IS NOT NULL OR p.first_item <> p.item
    FROM placed AS p
    LEFT JOIN fresh AS f ON f.conv_id = p.conv_id AND f.item = p.first_item
    ORDER BY p.item;
END;
$$;
