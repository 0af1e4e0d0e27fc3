-- When the worker next needs to look at an open case (`fraud.cases.next_check_at`): the next
-- ladder step's due time, or the moment enough servers leave the active window for the key to
-- fall back within its limit, whichever is first. A pass evaluates only the open cases whose
-- time has come; ingest and the fraud team's actions set it to "now" when something changed.
-- NULL: nothing further runs for the case without a person (stage disabled). A case written
-- without one (default) is due at once.

ALTER TABLE fraud_cases ADD COLUMN next_check_at timestamptz DEFAULT '-infinity';
UPDATE fraud_cases SET next_check_at = CASE WHEN status = 'open' THEN '-infinity'::timestamptz END;
CREATE INDEX fraud_cases_check_idx ON fraud_cases (next_check_at) WHERE status = 'open';
