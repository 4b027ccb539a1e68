-- Out-of-memory kills of a session, as the kernel counted and logged them:
-- how many, and the last victim (its command name and host PID from the
-- kernel log's oom-kill line, when the log still had it; when the daemon saw it).
ALTER TABLE sessions ADD COLUMN oom_kills INTEGER NOT NULL DEFAULT 0 CHECK (oom_kills >= 0);
ALTER TABLE sessions ADD COLUMN oom_victim TEXT;
ALTER TABLE sessions ADD COLUMN oom_victim_pid INTEGER;
ALTER TABLE sessions ADD COLUMN oom_at TEXT;
-- The kernel's count starts again with each cgroup a session gets (at create
-- and at every start after a stop): the kills of its earlier ones.
ALTER TABLE sessions ADD COLUMN oom_kills_before INTEGER NOT NULL DEFAULT 0 CHECK (oom_kills_before >= 0);

-- The audit trail also records what the kernel did in a session (an OOM
-- kill: via 'kernel') and what the daemon did of itself (an idle stop: via
-- 'daemon'): no caller process, decision 'none'. SQLite cannot
-- change a CHECK in place: the table is copied, ids kept.
CREATE TABLE events_new (
  id           INTEGER PRIMARY KEY,
  time         TEXT NOT NULL,
  caller_uid   INTEGER NOT NULL,
  caller_gid   INTEGER,
  caller_pid   INTEGER,
  via          TEXT NOT NULL CHECK (via IN ('socket', 'tcp', 'kernel', 'daemon')),
  action       TEXT NOT NULL,
  session_id   TEXT,
  decision     TEXT NOT NULL CHECK (decision IN ('allow', 'deny', 'none')),
  rule         TEXT NOT NULL,
  detail       TEXT,
  object_owner INTEGER
) STRICT;
INSERT INTO events_new (id, time, caller_uid, caller_gid, caller_pid, via, action, session_id, decision, rule, detail, object_owner)
  SELECT id, time, caller_uid, caller_gid, caller_pid, via, action, session_id, decision, rule, detail, object_owner FROM events;
DROP TABLE events;
ALTER TABLE events_new RENAME TO events;
CREATE INDEX events_session ON events (session_id, id);
CREATE INDEX events_time ON events (time);
CREATE INDEX events_caller ON events (caller_uid, id);
CREATE INDEX events_object_owner ON events (object_owner, id);
