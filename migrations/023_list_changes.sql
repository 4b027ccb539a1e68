-- Which sessions each move of the list's version touched (021): a list
-- kept at version V is brought up to date by reading again only the
-- sessions changed after V (src/store/listedRows.ts), not every row. One
-- row per session, with the version of its last change; '*' for a change
-- that can touch any session's view (a volume's name or owner, shown in
-- every session that mounts it), after which a list is read whole. A
-- prune of these records (src/store/endedRows.ts, with the sessions it
-- deletes) raises list_version.floor: a list kept from before the floor is
-- read whole. Each trigger moves the version and records its session in
-- one statement pair, in the writer's transaction, whichever connection
-- writes (test/unit/listVersion.test.ts checks each table's three).
CREATE TABLE list_changes (
  session_id TEXT PRIMARY KEY,
  n          INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
CREATE INDEX list_changes_n ON list_changes (n);
ALTER TABLE list_version ADD COLUMN floor INTEGER NOT NULL DEFAULT 0;

DROP TRIGGER sessions_listed_insert;
CREATE TRIGGER sessions_listed_insert AFTER INSERT ON sessions BEGIN UPDATE list_version SET n = n + 1; INSERT INTO list_changes (session_id, n) SELECT NEW.id, n FROM list_version WHERE id = 1 ON CONFLICT (session_id) DO UPDATE SET n = excluded.n; END;
DROP TRIGGER sessions_listed_update;
CREATE TRIGGER sessions_listed_update AFTER UPDATE ON sessions BEGIN UPDATE list_version SET n = n + 1; INSERT INTO list_changes (session_id, n) SELECT OLD.id, n FROM list_version WHERE id = 1 ON CONFLICT (session_id) DO UPDATE SET n = excluded.n; INSERT INTO list_changes (session_id, n) SELECT NEW.id, n FROM list_version WHERE id = 1 ON CONFLICT (session_id) DO UPDATE SET n = excluded.n; END;
DROP TRIGGER sessions_listed_delete;
CREATE TRIGGER sessions_listed_delete AFTER DELETE ON sessions BEGIN UPDATE list_version SET n = n + 1; INSERT INTO list_changes (session_id, n) SELECT OLD.id, n FROM list_version WHERE id = 1 ON CONFLICT (session_id) DO UPDATE SET n = excluded.n; END;
DROP TRIGGER ip_leases_listed_insert;
CREATE TRIGGER ip_leases_listed_insert AFTER INSERT ON ip_leases BEGIN UPDATE list_version SET n = n + 1; INSERT INTO list_changes (session_id, n) SELECT NEW.session_id, n FROM list_version WHERE id = 1 ON CONFLICT (session_id) DO UPDATE SET n = excluded.n; END;
DROP TRIGGER ip_leases_listed_update;
CREATE TRIGGER ip_leases_listed_update AFTER UPDATE ON ip_leases BEGIN UPDATE list_version SET n = n + 1; INSERT INTO list_changes (session_id, n) SELECT OLD.session_id, n FROM list_version WHERE id = 1 ON CONFLICT (session_id) DO UPDATE SET n = excluded.n; INSERT INTO list_changes (session_id, n) SELECT NEW.session_id, n FROM list_version WHERE id = 1 ON CONFLICT (session_id) DO UPDATE SET n = excluded.n; END;
DROP TRIGGER ip_leases_listed_delete;
CREATE TRIGGER ip_leases_listed_delete AFTER DELETE ON ip_leases BEGIN UPDATE list_version SET n = n + 1; INSERT INTO list_changes (session_id, n) SELECT OLD.session_id, n FROM list_version WHERE id = 1 ON CONFLICT (session_id) DO UPDATE SET n = excluded.n; END;
DROP TRIGGER published_ports_listed_insert;
CREATE TRIGGER published_ports_listed_insert AFTER INSERT ON published_ports BEGIN UPDATE list_version SET n = n + 1; INSERT INTO list_changes (session_id, n) SELECT NEW.session_id, n FROM list_version WHERE id = 1 ON CONFLICT (session_id) DO UPDATE SET n = excluded.n; END;
DROP TRIGGER published_ports_listed_update;
CREATE TRIGGER published_ports_listed_update AFTER UPDATE ON published_ports BEGIN UPDATE list_version SET n = n + 1; INSERT INTO list_changes (session_id, n) SELECT OLD.session_id, n FROM list_version WHERE id = 1 ON CONFLICT (session_id) DO UPDATE SET n = excluded.n; INSERT INTO list_changes (session_id, n) SELECT NEW.session_id, n FROM list_version WHERE id = 1 ON CONFLICT (session_id) DO UPDATE SET n = excluded.n; END;
DROP TRIGGER published_ports_listed_delete;
CREATE TRIGGER published_ports_listed_delete AFTER DELETE ON published_ports BEGIN UPDATE list_version SET n = n + 1; INSERT INTO list_changes (session_id, n) SELECT OLD.session_id, n FROM list_version WHERE id = 1 ON CONFLICT (session_id) DO UPDATE SET n = excluded.n; END;
DROP TRIGGER session_secrets_listed_insert;
CREATE TRIGGER session_secrets_listed_insert AFTER INSERT ON session_secrets BEGIN UPDATE list_version SET n = n + 1; INSERT INTO list_changes (session_id, n) SELECT NEW.session_id, n FROM list_version WHERE id = 1 ON CONFLICT (session_id) DO UPDATE SET n = excluded.n; END;
DROP TRIGGER session_secrets_listed_update;
CREATE TRIGGER session_secrets_listed_update AFTER UPDATE ON session_secrets BEGIN UPDATE list_version SET n = n + 1; INSERT INTO list_changes (session_id, n) SELECT OLD.session_id, n FROM list_version WHERE id = 1 ON CONFLICT (session_id) DO UPDATE SET n = excluded.n; INSERT INTO list_changes (session_id, n) SELECT NEW.session_id, n FROM list_version WHERE id = 1 ON CONFLICT (session_id) DO UPDATE SET n = excluded.n; END;
DROP TRIGGER session_secrets_listed_delete;
CREATE TRIGGER session_secrets_listed_delete AFTER DELETE ON session_secrets BEGIN UPDATE list_version SET n = n + 1; INSERT INTO list_changes (session_id, n) SELECT OLD.session_id, n FROM list_version WHERE id = 1 ON CONFLICT (session_id) DO UPDATE SET n = excluded.n; END;
DROP TRIGGER session_volumes_listed_insert;
CREATE TRIGGER session_volumes_listed_insert AFTER INSERT ON session_volumes BEGIN UPDATE list_version SET n = n + 1; INSERT INTO list_changes (session_id, n) SELECT NEW.session_id, n FROM list_version WHERE id = 1 ON CONFLICT (session_id) DO UPDATE SET n = excluded.n; END;
DROP TRIGGER session_volumes_listed_update;
CREATE TRIGGER session_volumes_listed_update AFTER UPDATE ON session_volumes BEGIN UPDATE list_version SET n = n + 1; INSERT INTO list_changes (session_id, n) SELECT OLD.session_id, n FROM list_version WHERE id = 1 ON CONFLICT (session_id) DO UPDATE SET n = excluded.n; INSERT INTO list_changes (session_id, n) SELECT NEW.session_id, n FROM list_version WHERE id = 1 ON CONFLICT (session_id) DO UPDATE SET n = excluded.n; END;
DROP TRIGGER session_volumes_listed_delete;
CREATE TRIGGER session_volumes_listed_delete AFTER DELETE ON session_volumes BEGIN UPDATE list_version SET n = n + 1; INSERT INTO list_changes (session_id, n) SELECT OLD.session_id, n FROM list_version WHERE id = 1 ON CONFLICT (session_id) DO UPDATE SET n = excluded.n; END;
DROP TRIGGER volumes_listed_insert;
CREATE TRIGGER volumes_listed_insert AFTER INSERT ON volumes BEGIN UPDATE list_version SET n = n + 1; INSERT INTO list_changes (session_id, n) SELECT '*', n FROM list_version WHERE id = 1 ON CONFLICT (session_id) DO UPDATE SET n = excluded.n; END;
DROP TRIGGER volumes_listed_update;
CREATE TRIGGER volumes_listed_update AFTER UPDATE OF id, owner_uid, name ON volumes BEGIN UPDATE list_version SET n = n + 1; INSERT INTO list_changes (session_id, n) SELECT '*', n FROM list_version WHERE id = 1 ON CONFLICT (session_id) DO UPDATE SET n = excluded.n; END;
DROP TRIGGER volumes_listed_delete;
CREATE TRIGGER volumes_listed_delete AFTER DELETE ON volumes BEGIN UPDATE list_version SET n = n + 1; INSERT INTO list_changes (session_id, n) SELECT '*', n FROM list_version WHERE id = 1 ON CONFLICT (session_id) DO UPDATE SET n = excluded.n; END;
