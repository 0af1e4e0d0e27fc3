-- The Redis license cache's safety net: every change of a license (or of its add-ons) marks
-- the row unsynced; the worker re-writes unsynced licenses into Redis and marks them synced
-- only if the row did not change meanwhile (xmin). Admin writes still write through at once;
-- this catches a write whose Redis half failed after PostgreSQL committed (R17).

ALTER TABLE licenses ADD COLUMN cache_synced boolean NOT NULL DEFAULT false;
CREATE INDEX licenses_unsynced_idx ON licenses (key) WHERE NOT cache_synced;

CREATE FUNCTION licenses_mark_unsynced() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' OR NEW.cache_synced IS NOT DISTINCT FROM OLD.cache_synced THEN
        NEW.cache_synced := false;
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER licenses_unsynced BEFORE INSERT OR UPDATE ON licenses
    FOR EACH ROW EXECUTE FUNCTION licenses_mark_unsynced();

CREATE FUNCTION license_addons_mark_unsynced() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE licenses SET cache_synced = false
    WHERE key = COALESCE(NEW.license_key, OLD.license_key) AND cache_synced;
    RETURN NULL;
END $$;

CREATE TRIGGER license_addons_unsynced AFTER INSERT OR UPDATE OR DELETE ON license_addons
    FOR EACH ROW EXECUTE FUNCTION license_addons_mark_unsynced();
