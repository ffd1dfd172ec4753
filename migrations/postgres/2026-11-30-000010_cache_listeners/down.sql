DROP TABLE cache_listeners;
