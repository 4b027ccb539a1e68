-- Sessions, their ID-range slots and every kernel object they own.
-- A kernel object is recorded here before it is created, so a crash at any
-- point can be cleaned up at the next start.

CREATE TABLE sessions (
  id              TEXT PRIMARY KEY CHECK (id GLOB 's-[0-9a-f]*' AND length(id) = 12),
  name            TEXT,
  state           TEXT NOT NULL CHECK (state IN ('creating', 'running', 'stopping', 'stopped', 'failed')),
  hostname        TEXT NOT NULL,
  init_pid        INTEGER,
  init_start_time TEXT,             -- /proc/<pid>/stat field 22, as text (u64)
  id_slot         INTEGER,
  limits          TEXT NOT NULL,    -- JSON, validated by src/api/schemas.ts
  created_at      TEXT NOT NULL,
  updated_at      TEXT NOT NULL,
  last_error      TEXT
) STRICT;

-- A name is unique among live sessions; stopped ones give it back.
CREATE UNIQUE INDEX sessions_live_name ON sessions (name)
  WHERE name IS NOT NULL AND state IN ('creating', 'running', 'stopping');
CREATE INDEX sessions_state ON sessions (state);

CREATE TABLE id_slots (
  slot       INTEGER PRIMARY KEY CHECK (slot >= 0),
  session_id TEXT NOT NULL UNIQUE REFERENCES sessions (id)
) STRICT;

CREATE TABLE kernel_objects (
  session_id TEXT NOT NULL REFERENCES sessions (id),
  kind       TEXT NOT NULL CHECK (kind IN ('cgroup')),
  ref        TEXT NOT NULL,
  PRIMARY KEY (kind, ref)
) STRICT;
CREATE INDEX kernel_objects_session ON kernel_objects (session_id);
