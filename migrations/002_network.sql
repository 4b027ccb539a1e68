-- Per-session networking: mode, IP leases, published ports, veth objects.

ALTER TABLE sessions ADD COLUMN network TEXT NOT NULL DEFAULT 'none' CHECK (network IN ('bridge', 'none'));

-- One lease per session, one session per address. Recorded before the link
-- exists, released only after it is gone.
CREATE TABLE ip_leases (
  address    INTEGER PRIMARY KEY,   -- IPv4 as an unsigned 32-bit integer
  session_id TEXT NOT NULL UNIQUE REFERENCES sessions (id)
) STRICT;

CREATE TABLE published_ports (
  host_ip      TEXT NOT NULL,
  host_port    INTEGER NOT NULL CHECK (host_port BETWEEN 1 AND 65535),
  session_id   TEXT NOT NULL REFERENCES sessions (id),
  session_port INTEGER NOT NULL CHECK (session_port BETWEEN 1 AND 65535),
  PRIMARY KEY (host_ip, host_port)
) STRICT;
CREATE INDEX published_ports_session ON published_ports (session_id);

-- kernel_objects learns the 'veth' kind (SQLite cannot alter a CHECK).
CREATE TABLE kernel_objects_new (
  session_id TEXT NOT NULL REFERENCES sessions (id),
  kind       TEXT NOT NULL CHECK (kind IN ('cgroup', 'veth')),
  ref        TEXT NOT NULL,
  PRIMARY KEY (kind, ref)
) STRICT;
INSERT INTO kernel_objects_new SELECT session_id, kind, ref FROM kernel_objects;
DROP TABLE kernel_objects;
ALTER TABLE kernel_objects_new RENAME TO kernel_objects;
CREATE INDEX kernel_objects_session ON kernel_objects (session_id);
