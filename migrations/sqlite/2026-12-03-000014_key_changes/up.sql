-- A counter that every change of api_keys moves, by trigger: whoever writes (the server, the
-- `keys` command while a server runs, an import), a server that caches authenticated database
-- keys reads it before it trusts its cache, and drops the cache when it moved
-- (src/auth/key_cache.rs).
CREATE TABLE key_changes (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    n  BIGINT NOT NULL
);
INSERT INTO key_changes (id, n) VALUES (1, 0);
CREATE TRIGGER api_keys_inserted AFTER INSERT ON api_keys
BEGIN UPDATE key_changes SET n = n + 1 WHERE id = 1; END;
CREATE TRIGGER api_keys_updated AFTER UPDATE ON api_keys
BEGIN UPDATE key_changes SET n = n + 1 WHERE id = 1; END;
CREATE TRIGGER api_keys_deleted AFTER DELETE ON api_keys
BEGIN UPDATE key_changes SET n = n + 1 WHERE id = 1; END;
