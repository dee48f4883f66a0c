-- The validation report, profile and masking policy of a version (a VersionDetails message).
ALTER TABLE dataset_versions ADD COLUMN details BYTEA;
