-- Volumes: named ext4 images, each loop-mounted on the host under
-- <state_dir>/volumes and idmapped into the sessions that use them. The row
-- is written ('creating') before the image exists and goes only after the
-- image is gone ('removing' in between), so a crash leaves a row to finish.
CREATE TABLE volumes (
  name       TEXT PRIMARY KEY,
  state      TEXT NOT NULL CHECK (state IN ('creating', 'ready', 'removing')),
  size_mb    INTEGER NOT NULL CHECK (size_mb > 0),
  owner_uid  INTEGER NOT NULL,
  created_at TEXT NOT NULL
) STRICT;

-- What each session mounts, written with the session's row; a volume is in
-- use while one of these belongs to a live session.
CREATE TABLE session_volumes (
  session_id TEXT NOT NULL REFERENCES sessions (id),
  volume     TEXT NOT NULL REFERENCES volumes (name),
  target     TEXT NOT NULL,
  readonly   INTEGER NOT NULL CHECK (readonly IN (0, 1)),
  PRIMARY KEY (session_id, target)
) STRICT;
CREATE INDEX session_volumes_volume ON session_volumes (volume);
