-- Who created each session (the caller's uid; NULL for sessions of older
-- daemons, which only root may reach through a `self` rule's eyes), and the
-- audit trail: every access decision, allowed or denied, and what decided it.
ALTER TABLE sessions ADD COLUMN owner_uid INTEGER;

CREATE TABLE events (
  id          INTEGER PRIMARY KEY,
  time        TEXT NOT NULL,
  caller_uid  INTEGER NOT NULL,
  caller_gid  INTEGER,
  caller_pid  INTEGER,
  via         TEXT NOT NULL CHECK (via IN ('socket', 'tcp')),
  action      TEXT NOT NULL,
  session_id  TEXT,
  decision    TEXT NOT NULL CHECK (decision IN ('allow', 'deny')),
  rule        TEXT NOT NULL,
  detail      TEXT
) STRICT;
CREATE INDEX events_session ON events (session_id, id);
CREATE INDEX events_time ON events (time);
