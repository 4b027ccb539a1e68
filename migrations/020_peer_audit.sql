-- Fleet mode: a call another node forwarded is recorded in the owning
-- node's trail too (via 'peer', rule "node NAME": the node that checked it
-- and vouches for the caller), so what a node did for a peer is on record
-- where it was done. SQLite cannot change a CHECK in place: the table is
-- copied, ids kept, as in 013.
CREATE TABLE events_new (
  id           INTEGER PRIMARY KEY,
  time         TEXT NOT NULL,
  caller_uid   INTEGER NOT NULL,
  caller_gid   INTEGER,
  caller_pid   INTEGER,
  via          TEXT NOT NULL CHECK (via IN ('socket', 'tcp', 'kernel', 'daemon', 'peer')),
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
