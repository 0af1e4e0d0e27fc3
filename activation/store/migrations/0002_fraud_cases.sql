-- Fraud cases (R13–R16), their exactly-once escalation steps, the notification outbox (SPEC §7)
-- and the M&S duties' once-only marks (R5, R6).

CREATE TABLE fraud_cases (
    id                bigserial PRIMARY KEY,
    license_key       text NOT NULL REFERENCES licenses (key),
    status            text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'resolved')),
    stage             text NOT NULL DEFAULT 'grace'
                      CHECK (stage IN ('grace', 'overdue', 'disabled', 'resolved')),
    severity          text NOT NULL DEFAULT 'normal' CHECK (severity IN ('normal', 'high')),
    leak_suspected    boolean NOT NULL DEFAULT false,
    opened_at         timestamptz NOT NULL,
    extension_seconds bigint NOT NULL DEFAULT 0 CHECK (extension_seconds >= 0),
    on_hold           boolean NOT NULL DEFAULT false,
    hold_started_at   timestamptz,
    servers_active    integer NOT NULL,
    servers_allowed   integer NOT NULL,
    next_due_at       timestamptz,
    resolved_at       timestamptz,
    resolution        text,
    resolved_by       text
);
CREATE UNIQUE INDEX fraud_cases_one_open_idx ON fraud_cases (license_key) WHERE status = 'open';
CREATE INDEX fraud_cases_due_idx ON fraud_cases (next_due_at) WHERE status = 'open';

CREATE TABLE case_steps (
    case_id  bigint NOT NULL REFERENCES fraud_cases (id),
    step     text NOT NULL,
    ran_at   timestamptz NOT NULL,
    PRIMARY KEY (case_id, step)
);

CREATE TABLE case_events (
    id       bigserial PRIMARY KEY,
    case_id  bigint NOT NULL REFERENCES fraud_cases (id),
    at       timestamptz NOT NULL,
    kind     text NOT NULL,
    actor    text NOT NULL,
    note     text,
    data     jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX case_events_case_idx ON case_events (case_id, id);

CREATE TABLE phone_tasks (
    id          bigserial PRIMARY KEY,
    case_id     bigint NOT NULL REFERENCES fraud_cases (id),
    created_at  timestamptz NOT NULL,
    status      text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'done')),
    outcome     text,
    done_at     timestamptz,
    UNIQUE (case_id)
);

CREATE TABLE notifications (
    id               bigserial PRIMARY KEY,
    dedupe_key       text NOT NULL UNIQUE,
    case_id          bigint REFERENCES fraud_cases (id),
    license_key      text REFERENCES licenses (key),
    channel          text NOT NULL CHECK (channel IN ('email', 'webhook')),
    template         text NOT NULL,
    recipient        text NOT NULL,
    payload          jsonb NOT NULL,
    status           text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sent', 'dead')),
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL,
    last_error       text,
    created_at       timestamptz NOT NULL,
    sent_at          timestamptz
);
CREATE INDEX notifications_due_idx ON notifications (next_attempt_at) WHERE status = 'pending';
CREATE INDEX notifications_case_idx ON notifications (case_id);

CREATE TABLE ms_duties (
    license_key      text NOT NULL REFERENCES licenses (key),
    covered_through  date NOT NULL,
    duty             text NOT NULL,
    done_at          timestamptz NOT NULL,
    PRIMARY KEY (license_key, covered_through, duty)
);

CREATE TABLE dead_letters (
    id          bigserial PRIMARY KEY,
    stream      text NOT NULL,
    entry_id    text NOT NULL,
    fields      jsonb NOT NULL,
    error       text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (stream, entry_id)
);
