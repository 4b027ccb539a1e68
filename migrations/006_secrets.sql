-- The secret store's index: names, kinds and versions, never values. Values
-- are files under <state_dir>/secrets (root, 0600), one per name.
CREATE TABLE secrets (
  name       TEXT PRIMARY KEY,
  kind       TEXT NOT NULL CHECK (kind IN ('provider', 'env')),
  version    INTEGER NOT NULL CHECK (version >= 1),
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL
) STRICT;

-- What each session declared, and which version of each value it holds.
CREATE TABLE session_secrets (
  session_id TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
  name       TEXT NOT NULL,
  kind       TEXT NOT NULL CHECK (kind IN ('provider', 'env')),
  version    INTEGER NOT NULL,
  PRIMARY KEY (session_id, name)
) STRICT;
CREATE INDEX session_secrets_name ON session_secrets (name);
