-- Offline license files issued for air-gapped servers (SPEC §5, "Offline activation"): what
-- was issued, to whom, by whom, until when; the armored file itself so staff can send it again.
CREATE TABLE offline_files (
    id           bigserial PRIMARY KEY,
    license_key  text NOT NULL REFERENCES licenses (key),
    fingerprint  text NOT NULL,
    hostname     text NOT NULL DEFAULT '',
    product      text NOT NULL,
    version      text NOT NULL,
    code         text NOT NULL,
    valid        boolean NOT NULL,
    key_id       text NOT NULL,
    issued_at    timestamptz NOT NULL,
    valid_until  timestamptz,
    issued_by    text NOT NULL,
    file         text NOT NULL
);
CREATE INDEX offline_files_license_idx ON offline_files (license_key, id);
