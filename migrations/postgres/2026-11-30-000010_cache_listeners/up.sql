-- Each replica's cache listener registers its backend pid here before its cache serves
-- (src/db/notify.rs). A writer that finds a registered pid no longer connected waits out that
-- replica's cache lease before it answers, then removes the row. Logged, although its rows are
-- transient: after a crash the registrations of listeners that were connected must still be
-- there to be waited out.
CREATE TABLE cache_listeners (
    replica TEXT PRIMARY KEY,
    pid INTEGER NOT NULL
);
