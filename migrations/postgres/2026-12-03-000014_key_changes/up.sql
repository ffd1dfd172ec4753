-- A counter that every change of api_keys moves, by trigger (the same table as on SQLite, where
-- a server caches authenticated database keys and reads it before it trusts its cache:
-- src/auth/key_cache.rs). PostgreSQL replicas do not cache database keys.
CREATE TABLE key_changes (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    n  BIGINT NOT NULL
);
INSERT INTO key_changes (id, n) VALUES (1, 0);
CREATE FUNCTION api_keys_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE key_changes SET n = n + 1 WHERE id = 1;
    RETURN NULL;
END;
$$;
CREATE TRIGGER api_keys_changed AFTER INSERT OR UPDATE OR DELETE ON api_keys
FOR EACH STATEMENT EXECUTE FUNCTION api_keys_changed();
