DROP TRIGGER api_keys_deleted;
DROP TRIGGER api_keys_updated;
DROP TRIGGER api_keys_inserted;
DROP TABLE key_changes;
