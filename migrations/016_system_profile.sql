-- The system profile (docs/security.md, "The system profile"). The profile
-- list is a CHECK, so the table is rebuilt as 012 did (the migration runs
-- with foreign keys off, and checked before commit).
CREATE TABLE sessions_new (
  id               TEXT PRIMARY KEY CHECK (id GLOB 's-[0-9a-f]*' AND length(id) = 12),
  name             TEXT,
  state            TEXT NOT NULL CHECK (state IN ('creating', 'running', 'stopping', 'stopped', 'starting', 'destroying', 'destroyed', 'failed')),
  hostname         TEXT NOT NULL,
  init_pid         INTEGER,
  init_start_time  TEXT,
  id_slot          INTEGER,
  limits           TEXT NOT NULL,
  created_at       TEXT NOT NULL,
  updated_at       TEXT NOT NULL,
  last_error       TEXT,
  network          TEXT NOT NULL DEFAULT 'none' CHECK (network IN ('bridge', 'none')),
  keep_console     INTEGER NOT NULL DEFAULT 0 CHECK (keep_console IN (0, 1)),
  exit_code        INTEGER,
  exit_signal      INTEGER,
  stop_reason      TEXT,            -- a destroy's failure reason, set by the daemon when it ends the session
  owner_uid        INTEGER,
  profile          TEXT NOT NULL DEFAULT 'strict' CHECK (profile IN ('workspace', 'strict', 'system')),
  idle_timeout_s   INTEGER CHECK (idle_timeout_s IS NULL OR idle_timeout_s > 0),
  stopped_because  TEXT,            -- why its last stop happened: asked by a caller, or idle
  stored_bytes     INTEGER,         -- the size of its stored files while stopped
  env              TEXT,            -- JSON: the plain KEY=VALUE environment it was created with (a start gives it again)
  oom_kills        INTEGER NOT NULL DEFAULT 0 CHECK (oom_kills >= 0),
  oom_victim       TEXT,
  oom_victim_pid   INTEGER,
  oom_at           TEXT,
  oom_kills_before INTEGER NOT NULL DEFAULT 0 CHECK (oom_kills_before >= 0),
  ssh_key          TEXT
) STRICT;
INSERT INTO sessions_new (id, name, state, hostname, init_pid, init_start_time, id_slot, limits, created_at, updated_at, last_error,
                          network, keep_console, exit_code, exit_signal, stop_reason, owner_uid, profile, idle_timeout_s, stopped_because,
                          stored_bytes, env, oom_kills, oom_victim, oom_victim_pid, oom_at, oom_kills_before, ssh_key)
  SELECT id, name, state, hostname, init_pid, init_start_time, id_slot, limits, created_at, updated_at, last_error,
         network, keep_console, exit_code, exit_signal, stop_reason, owner_uid, profile, idle_timeout_s, stopped_because,
         stored_bytes, env, oom_kills, oom_victim, oom_victim_pid, oom_at, oom_kills_before, ssh_key
  FROM sessions;
DROP TABLE sessions;
ALTER TABLE sessions_new RENAME TO sessions;
CREATE INDEX sessions_state ON sessions (state);
CREATE UNIQUE INDEX sessions_live_name ON sessions (owner_uid, name)
  WHERE name IS NOT NULL AND state IN ('creating', 'running', 'stopping', 'stopped', 'starting', 'destroying');
