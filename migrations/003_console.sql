-- Sessions created with --console keep a console: it is started at create and
-- again when the daemon starts, without waiting for a first attach.
ALTER TABLE sessions ADD COLUMN keep_console INTEGER NOT NULL DEFAULT 0 CHECK (keep_console IN (0, 1));
