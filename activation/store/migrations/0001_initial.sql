-- The system of record (SPEC §2). Redis holds only what can be rebuilt from these tables.

CREATE TABLE customers (
    id          bigserial PRIMARY KEY,
    name        text NOT NULL,
    email       text NOT NULL,
    phone       text,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX customers_email_idx ON customers (lower(email));

CREATE TABLE licenses (
    key                 text PRIMARY KEY,
    customer_id         bigint NOT NULL REFERENCES customers (id),
    product             text NOT NULL,
    kind                text NOT NULL CHECK (kind IN ('perpetual', 'lease', 'trial', 'free')),
    edition             text NOT NULL CHECK (edition IN ('free', 'professional', 'enterprise')),
    purchased_on        date NOT NULL,
    ms_covered_through  date,
    lease_ends_on       date,
    trial_days          integer NOT NULL DEFAULT 30 CHECK (trial_days > 0),
    failover            boolean NOT NULL DEFAULT false,
    max_servers         integer NOT NULL DEFAULT 1 CHECK (max_servers >= 1),
    exception_max_servers integer CHECK (exception_max_servers >= 1),
    major_version       integer,
    limits              jsonb NOT NULL DEFAULT '{}'::jsonb,
    auto_renew          boolean NOT NULL DEFAULT false,
    status              text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'disabled')),
    disabled_reason     text,
    disabled_at         timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX licenses_customer_idx ON licenses (customer_id);
CREATE INDEX licenses_ms_end_idx ON licenses (ms_covered_through) WHERE kind = 'perpetual';

CREATE TABLE license_addons (
    license_key  text NOT NULL REFERENCES licenses (key) ON DELETE CASCADE,
    name         text NOT NULL,
    added_on     date NOT NULL,
    PRIMARY KEY (license_key, name)
);

CREATE TABLE releases (
    id           bigserial PRIMARY KEY,
    product      text NOT NULL,
    major        integer NOT NULL,
    minor        integer NOT NULL,
    build        integer NOT NULL,
    released_on  date NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (product, major, minor, build)
);

CREATE TABLE ms_transactions (
    id                     bigserial PRIMARY KEY,
    license_key            text NOT NULL REFERENCES licenses (key),
    kind                   text NOT NULL CHECK (kind IN ('purchase', 'renewal', 'reinstatement', 'auto_renewal')),
    on_date                date NOT NULL,
    price_ratio            numeric(4, 2),
    covered_through_before date,
    covered_through_after  date NOT NULL,
    actor                  text NOT NULL,
    created_at             timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ms_transactions_license_idx ON ms_transactions (license_key, id);

CREATE TABLE installations (
    license_key     text NOT NULL REFERENCES licenses (key),
    fingerprint     text NOT NULL,
    hostname        text NOT NULL DEFAULT '',
    ip              text NOT NULL DEFAULT '',
    version         text NOT NULL DEFAULT '',
    first_seen_at   timestamptz NOT NULL,
    last_seen_at    timestamptz NOT NULL,
    deactivated_at  timestamptz,
    PRIMARY KEY (license_key, fingerprint)
);

CREATE TABLE activation_events (
    event_id     text PRIMARY KEY,
    license_key  text NOT NULL,
    kind         text NOT NULL CHECK (kind IN ('activation', 'deactivation')),
    fingerprint  text NOT NULL,
    hostname     text NOT NULL DEFAULT '',
    ip           text NOT NULL DEFAULT '',
    version      text NOT NULL DEFAULT '',
    code         text NOT NULL DEFAULT '',
    occurred_at  timestamptz NOT NULL,
    ingested_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX activation_events_license_idx ON activation_events (license_key, occurred_at);

CREATE TABLE api_tokens (
    id            bigserial PRIMARY KEY,
    name          text NOT NULL,
    role          text NOT NULL CHECK (role IN ('viewer', 'reviewer', 'admin')),
    token_hash    bytea NOT NULL UNIQUE,
    created_at    timestamptz NOT NULL DEFAULT now(),
    created_by    text NOT NULL,
    revoked_at    timestamptz
);

CREATE TABLE audit_log (
    id      bigserial PRIMARY KEY,
    at      timestamptz NOT NULL,
    actor   text NOT NULL,
    action  text NOT NULL,
    target  text NOT NULL,
    before  jsonb,
    after   jsonb
);
CREATE INDEX audit_log_target_idx ON audit_log (target, id DESC);
