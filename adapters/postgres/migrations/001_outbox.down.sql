-- eventkit 001 down: drops the outbox and the idempotency markers.
DROP TABLE IF EXISTS processed_events;
DROP TABLE IF EXISTS outbox;
