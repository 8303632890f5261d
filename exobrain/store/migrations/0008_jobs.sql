-- Each job's lifecycle (DESIGN.md §11), keyed by the job id the orchestrator derives from
-- the producer's idempotency key. A knowledge dispatch records its jobs here when it writes
-- them to the outbox (ENQUEUED_OR_PENDING); workers move them on. `version` grows with every
-- transition, so a watcher merging the row with status events keeps only newer ones.
-- `user_id` is the envelope's correlation id: text, as JSON job types need not name a user.
CREATE TABLE jobs (
    id uuid PRIMARY KEY,
    job_type text NOT NULL,
    user_id text NOT NULL,
    state text NOT NULL DEFAULT 'ENQUEUED_OR_PENDING' CHECK (state IN (
        'ENQUEUED_OR_PENDING', 'STARTED', 'RETRYING', 'SUCCEEDED', 'FAILED_FINAL')),
    attempt integer NOT NULL DEFAULT 0,
    detail text,
    version bigint NOT NULL DEFAULT 1,
    created_at timestamptz NOT NULL DEFAULT now(),
    started_at timestamptz,
    finished_at timestamptz,
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX jobs_user_created ON jobs (user_id, created_at DESC);
