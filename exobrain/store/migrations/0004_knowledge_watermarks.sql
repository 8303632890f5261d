-- What is committed to the knowledge base becomes a per-journal watermark: every
-- message of the journal at or below committed_through has been dispatched. A
-- dispatch moves it in the transaction that writes its outbox rows: one row per
-- journal, where flagging each message wrote a new version of every one of them,
-- with entries in each of messages' indexes (the full-text GIN index included).
-- Sequences are gap-free and assigned under the conversation row lock, so a
-- snapshot that holds a journal's message n holds all of 1..n: "sequence above
-- the watermark" is exactly what no dispatch has taken yet.
CREATE TABLE knowledge_watermarks (
    conversation_id    uuid PRIMARY KEY REFERENCES conversations (id) ON DELETE CASCADE,
    committed_through  bigint NOT NULL CHECK (committed_through >= 0)
);

-- Existing journals start at the end of their leading run of committed messages.
-- committed_to_knowledge_base is no longer written; the few messages above a
-- watermark that it marks (committed out of order before this migration) are still
-- skipped by the selection until the watermark passes them.
INSERT INTO knowledge_watermarks (conversation_id, committed_through)
SELECT conversation_id,
       coalesce(min(sequence) FILTER (WHERE NOT committed_to_knowledge_base) - 1, max(sequence))
FROM messages
GROUP BY conversation_id
HAVING bool_or(committed_to_knowledge_base);

-- Every message written from now on is unflagged: this partial index would cover them
-- all, at a cost to every append. The selection walks messages_conversation_sequence_key.
DROP INDEX messages_uncommitted_idx;
