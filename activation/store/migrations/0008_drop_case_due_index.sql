-- The worker finds the cases due by `next_check_at` (`fraud_cases_check_idx`, migration 0007);
-- no query filters or sorts by `next_due_at` any more, so its index only costs writes. The
-- column stays: case writes still record the next ladder step's due time in it.

DROP INDEX fraud_cases_due_idx;
