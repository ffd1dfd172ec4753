-- Versions a gate recorded were stored with source 'gate', which the contract's clients cannot
-- read (source is upload, promote, migrate or rollback): a gate's recording is an upload.
UPDATE baselines SET source = 'upload' WHERE source = 'gate';
