-- Tenants: every object has an owner, and names are per owner.

-- Sessions of daemons before owners were recorded were root's (only root
-- could create them then). A name is unique among one owner's live sessions.
UPDATE sessions SET owner_uid = 0 WHERE owner_uid IS NULL;
DROP INDEX sessions_live_name;
CREATE UNIQUE INDEX sessions_live_name ON sessions (owner_uid, name)
  WHERE name IS NOT NULL AND state IN ('creating', 'running', 'stopping');

-- Volumes get an id (their image and mount are named by it) and a name
-- unique per owner. Existing volumes keep their name as their id, so their
-- images stay where they are.
PRAGMA defer_foreign_keys = ON;
CREATE TABLE volumes_new (
  id         TEXT PRIMARY KEY CHECK (id GLOB '[a-z0-9]*' AND length(id) BETWEEN 1 AND 63),
  name       TEXT NOT NULL,
  state      TEXT NOT NULL CHECK (state IN ('creating', 'ready', 'removing')),
  size_mb    INTEGER NOT NULL CHECK (size_mb > 0),
  owner_uid  INTEGER NOT NULL,
  created_at TEXT NOT NULL,
  UNIQUE (owner_uid, name)
) STRICT;
INSERT INTO volumes_new (id, name, state, size_mb, owner_uid, created_at) SELECT name, name, state, size_mb, owner_uid, created_at FROM volumes;
CREATE TABLE session_volumes_new (
  session_id TEXT NOT NULL REFERENCES sessions (id),
  volume     TEXT NOT NULL REFERENCES volumes_new (id),
  target     TEXT NOT NULL,
  readonly   INTEGER NOT NULL CHECK (readonly IN (0, 1)),
  PRIMARY KEY (session_id, target)
) STRICT;
INSERT INTO session_volumes_new SELECT session_id, volume, target, readonly FROM session_volumes;
DROP TABLE session_volumes;
DROP TABLE volumes;
ALTER TABLE volumes_new RENAME TO volumes;
ALTER TABLE session_volumes_new RENAME TO session_volumes;
CREATE INDEX session_volumes_volume ON session_volumes (volume);

-- Secrets belong to the uid that set them; root may share one of its own
-- (others may then use it, never read, list, replace or remove it). Values
-- move from secrets/NAME to secrets/UID/NAME (the daemon moves the files).
-- Before, one store served every caller a rule let set secrets: each goes to
-- whoever set it last, as the audit trail says (root's if the trail no longer
-- has it), so a value a user chose is not silently root's now.
CREATE TABLE secrets_new (
  owner_uid  INTEGER NOT NULL,
  name       TEXT NOT NULL,
  kind       TEXT NOT NULL CHECK (kind IN ('provider', 'env')),
  version    INTEGER NOT NULL CHECK (version >= 1),
  shared     INTEGER NOT NULL DEFAULT 0 CHECK (shared IN (0, 1)),
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL,
  PRIMARY KEY (owner_uid, name)
) STRICT;
INSERT INTO secrets_new (owner_uid, name, kind, version, created_at, updated_at)
  SELECT coalesce((SELECT e.caller_uid FROM events e WHERE e.action = 'auth.set' AND e.decision = 'allow' AND e.detail = secrets.name ORDER BY e.id DESC LIMIT 1), 0),
         name, kind, version, created_at, updated_at
  FROM secrets;
DROP TABLE secrets;
ALTER TABLE secrets_new RENAME TO secrets;
-- Whose secret a session holds (its name inside the session is the bare name).
ALTER TABLE session_secrets ADD COLUMN owner_uid INTEGER NOT NULL DEFAULT 0;
UPDATE session_secrets SET owner_uid = coalesce((SELECT owner_uid FROM secrets WHERE secrets.name = session_secrets.name), 0);
CREATE INDEX session_secrets_owner_name ON session_secrets (owner_uid, name);

-- Events name the owner of the object they act on, so an owner sees the
-- calls on its objects (and a self-scoped caller nothing else but its own).
ALTER TABLE events ADD COLUMN object_owner INTEGER;
UPDATE events SET object_owner = (SELECT owner_uid FROM sessions WHERE sessions.id = events.session_id) WHERE session_id IS NOT NULL;
CREATE INDEX events_caller ON events (caller_uid, id);
CREATE INDEX events_object_owner ON events (object_owner, id);
