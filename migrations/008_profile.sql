-- The capability profile a session was created with. Sessions of daemons
-- before profiles ran with no capabilities at all: they are 'strict'.
ALTER TABLE sessions ADD COLUMN profile TEXT NOT NULL DEFAULT 'strict' CHECK (profile IN ('workspace', 'strict'));
