-- A job's payload is written once and read back only to retry the job: it is kept as
-- the exact text the job carries, not parsed into jsonb on every write (an update of
-- 10,000 messages writes ~9 MB of payloads; as jsonb its insert took ~6 times as long
-- as text's) nor validated as json (~4 times): the dispatcher serialises it itself.
ALTER TABLE knowledge_dispatches ALTER COLUMN payload TYPE text USING payload::text;

-- Changing the type resets the column's compression (see 0003).
DO $$
BEGIN
    ALTER TABLE knowledge_dispatches ALTER COLUMN payload SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported OR invalid_parameter_value THEN
    NULL;
END $$;
