-- PostgreSQL only (replicas' cache listeners); one process owns a SQLite file. Kept so that
-- both backends have the same migration names.
SELECT 1;
