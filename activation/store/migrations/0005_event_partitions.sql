-- Activation history by month, a daily roll-up for the dashboard, and installations updated in
-- place.
--
-- activation_events is partitioned by month of occurred_at (UTC), so that retention
-- (ACTIVATION_EVENTS_RETENTION_DAYS, fraud/retention.py) drops whole partitions instead of
-- deleting rows. A partitioned table's unique key must contain the partition key: the key is
-- (event_id, occurred_at), both taken from the stream entry, so a redelivered entry still
-- conflicts with its first copy and ingestion stays exactly-once. Rows whose month has no
-- partition yet land in activation_events_default; activation_events_prepare(at) creates the
-- partitions of at's month and the next one and moves such rows into their months. This
-- migration calls it once, and the worker on every periodic pass (it is idempotent and costs
-- a catalog lookup when there is nothing to do).
--
-- activation_daily holds activations per UTC day, kept by a statement trigger from the rows
-- each INSERT really added (ON CONFLICT DO NOTHING leaves duplicates out of the transition
-- table), in a few slots per day so that concurrent workers rarely wait on one row.
--
-- Existing rows are copied (the copy fills the roll-up through its trigger): on a large table
-- this migration takes as long as rewriting it, while ingestion waits.

ALTER TABLE activation_events RENAME TO activation_events_unpartitioned;
ALTER INDEX activation_events_pkey RENAME TO activation_events_unpartitioned_pkey;
ALTER INDEX activation_events_license_idx RENAME TO activation_events_unpartitioned_license_idx;

CREATE TABLE activation_events (
    event_id     text NOT NULL,
    license_key  text NOT NULL,
    kind         text NOT NULL CHECK (kind IN ('activation', 'deactivation')),
    fingerprint  text NOT NULL,
    hostname     text NOT NULL DEFAULT '',
    ip           text NOT NULL DEFAULT '',
    version      text NOT NULL DEFAULT '',
    code         text NOT NULL DEFAULT '',
    occurred_at  timestamptz NOT NULL,
    ingested_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (event_id, occurred_at)
) PARTITION BY RANGE (occurred_at);
CREATE INDEX activation_events_license_idx ON activation_events (license_key, occurred_at);
CREATE TABLE activation_events_default PARTITION OF activation_events DEFAULT;

CREATE TABLE activation_daily (
    day          date NOT NULL,
    slot         smallint NOT NULL,
    activations  bigint NOT NULL,
    PRIMARY KEY (day, slot)
);

CREATE FUNCTION activation_daily_add() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO activation_daily AS d (day, slot, activations)
    SELECT (occurred_at AT TIME ZONE 'UTC')::date, pg_backend_pid() % 8, count(*)
    FROM added WHERE kind = 'activation' GROUP BY 1 ORDER BY 1
    ON CONFLICT (day, slot) DO UPDATE SET activations = d.activations + EXCLUDED.activations;
    RETURN NULL;
END $$;

CREATE TRIGGER activation_events_daily AFTER INSERT ON activation_events
    REFERENCING NEW TABLE AS added FOR EACH STATEMENT EXECUTE FUNCTION activation_daily_add();

CREATE FUNCTION activation_daily_clear() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    TRUNCATE activation_daily;
    RETURN NULL;
END $$;

CREATE TRIGGER activation_events_daily_clear AFTER TRUNCATE ON activation_events
    FOR EACH STATEMENT EXECUTE FUNCTION activation_daily_clear();

-- The partition of one month (its first day), named activation_events_YYYY_MM; the default
-- partition's rows of that month move into it. False when it exists already.
CREATE FUNCTION activation_events_add_month(month date) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    first date := date_trunc('month', month)::date;
    name text := 'activation_events_' || to_char(first, 'YYYY_MM');
    low timestamptz := first::timestamp AT TIME ZONE 'UTC';
    high timestamptz := (first + interval '1 month')::timestamp AT TIME ZONE 'UTC';
BEGIN
    IF to_regclass(name) IS NOT NULL THEN
        RETURN false;
    END IF;
    -- Rows routed to the default partition wait until the month is attached (moments): one
    -- arriving between the move and the attach would fail the attach.
    LOCK TABLE activation_events_default IN EXCLUSIVE MODE;
    EXECUTE format('CREATE TABLE %I (LIKE activation_events INCLUDING DEFAULTS '
                   'INCLUDING CONSTRAINTS)', name);
    EXECUTE format('WITH moved AS (DELETE FROM activation_events_default WHERE occurred_at >= $1 '
                   'AND occurred_at < $2 RETURNING *) INSERT INTO %I SELECT * FROM moved', name)
        USING low, high;
    -- ATTACH (not CREATE ... PARTITION OF) locks the parent only against schema changes:
    -- ingestion goes on while a month is added.
    EXECUTE format('ALTER TABLE activation_events ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)',
                   name, low, high);
    RETURN true;
END $$;

-- The partitions of at's month and the next `months_ahead`, and of every month that has rows
-- waiting in the default partition; the number created.
CREATE FUNCTION activation_events_prepare(at timestamptz, months_ahead integer DEFAULT 1)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    created integer := 0;
    month date;
BEGIN
    FOR month IN
        SELECT (date_trunc('month', at AT TIME ZONE 'UTC') + n * interval '1 month')::date
        FROM generate_series(0, months_ahead) AS n
        UNION
        SELECT DISTINCT date_trunc('month', occurred_at AT TIME ZONE 'UTC')::date
        FROM activation_events_default
        ORDER BY 1
    LOOP
        IF activation_events_add_month(month) THEN
            created := created + 1;
        END IF;
    END LOOP;
    RETURN created;
END $$;

SELECT activation_events_add_month(month)
FROM (SELECT DISTINCT date_trunc('month', occurred_at AT TIME ZONE 'UTC')::date AS month
      FROM activation_events_unpartitioned) AS months;
SELECT activation_events_prepare(now());
INSERT INTO activation_events
    (event_id, license_key, kind, fingerprint, hostname, ip, version, code, occurred_at,
     ingested_at)
SELECT event_id, license_key, kind, fingerprint, hostname, ip, version, code, occurred_at,
       ingested_at
FROM activation_events_unpartitioned;
DROP TABLE activation_events_unpartitioned;

-- Installations: each phone-home rewrites its server's row (last_seen_at). With room left on
-- every page and no indexed column changed, that new version is a heap-only tuple on the
-- same page, which later reads prune without VACUUM and without growing the index.
ALTER TABLE installations SET (fillfactor = 70);
