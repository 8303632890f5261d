-- The chunk's place within the dispatch that cut it (journal order, then parts):
-- rows written by one transaction share created_at, so resumed rows need it to go
-- out in the order they were cut.
ALTER TABLE knowledge_dispatches ADD COLUMN position integer NOT NULL DEFAULT 0;
DROP INDEX knowledge_dispatches_pending_idx;
CREATE INDEX knowledge_dispatches_pending_idx ON knowledge_dispatches (created_at, position)
    WHERE status = 'pending';

-- Payloads are written once per chunk and read only to retry: lz4 compresses them
-- several times faster than the default pglz (servers built without lz4 keep pglz).
DO $$
BEGIN
    ALTER TABLE knowledge_dispatches ALTER COLUMN payload SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported OR invalid_parameter_value THEN
    NULL;
END $$;
