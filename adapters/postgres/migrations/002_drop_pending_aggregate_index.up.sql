-- eventkit 002: drops the per-aggregate pending index.
--
-- Every outbox INSERT paid for a fourth index entry that only the relay's
-- order check read. The check now scans the pending index below the
-- batch's highest id instead: the rows it walks are the ones other relays
-- hold and the ones backing off, which the claim walks as well.
DROP INDEX IF EXISTS outbox_pending_aggregate_idx;
