-- eventkit 002 down: restores the per-aggregate pending index.
CREATE INDEX IF NOT EXISTS outbox_pending_aggregate_idx ON outbox (aggregate_type, aggregate_id, id)
    WHERE published_at IS NULL AND quarantined_at IS NULL;
