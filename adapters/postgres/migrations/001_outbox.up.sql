-- eventkit 001: transactional outbox and idempotency markers.
--
-- Table names are unqualified: they are created in the first schema of the
-- search_path. postgres.Migrate sets search_path to the configured schema;
-- other migration tools should do the same (SET search_path TO my_schema;).

CREATE TABLE outbox (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id        uuid        NOT NULL,
    event_type      text        NOT NULL,
    schema_version  integer     NOT NULL,
    aggregate_type  text        NOT NULL,
    aggregate_id    text        NOT NULL,
    -- json (not jsonb) keeps the payload byte for byte as written.
    payload         json        NOT NULL,
    metadata        jsonb       NOT NULL DEFAULT '{}',
    occurred_at     timestamptz NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    published_at    timestamptz,
    attempts        integer     NOT NULL DEFAULT 0,
    last_error      text,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    quarantined_at  timestamptz,
    CONSTRAINT outbox_event_id_key UNIQUE (event_id)
);

-- What the relay claims, in insertion order.
CREATE INDEX outbox_pending_idx ON outbox (id)
    WHERE published_at IS NULL AND quarantined_at IS NULL;

-- Pending rows per aggregate: the relay's order check.
CREATE INDEX outbox_pending_aggregate_idx ON outbox (aggregate_type, aggregate_id, id)
    WHERE published_at IS NULL AND quarantined_at IS NULL;

-- Rows that failed at least once and hold back their aggregate (small).
CREATE INDEX outbox_retrying_idx ON outbox (aggregate_type, aggregate_id, id)
    WHERE published_at IS NULL AND quarantined_at IS NULL AND attempts > 0;

-- What cleanup deletes.
CREATE INDEX outbox_published_idx ON outbox (published_at)
    WHERE published_at IS NOT NULL;

-- What operators inspect and re-arm.
CREATE INDEX outbox_quarantined_idx ON outbox (quarantined_at)
    WHERE quarantined_at IS NOT NULL AND published_at IS NULL;

CREATE TABLE processed_events (
    handler_name text        NOT NULL,
    event_id     uuid        NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (handler_name, event_id)
);

CREATE INDEX processed_events_processed_at_idx ON processed_events (processed_at);
