-- The outbox's claim lease in wall-clock time (not the business clock a test may move), and
-- how often a row was claimed again after an earlier claim ended without a record: such a
-- re-send may repeat a message the receiver already accepted (same Message-ID / webhook-id).

ALTER TABLE notifications ADD COLUMN lease_until timestamptz;
ALTER TABLE notifications ADD COLUMN resends integer NOT NULL DEFAULT 0;
