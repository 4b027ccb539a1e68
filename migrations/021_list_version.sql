-- A version of what a session list shows, moved by every write to the
-- tables the list reads (src/store/listVersion.ts), by this daemon or any
-- other connection. A node answers another node's list with 304 while it
-- is unchanged (src/daemon/listTag.ts); before, every write to the database
-- but the audit trail's moved it, and a secret set or a volume's resize
-- made every other node's next list ask again. A migration that copies one
-- of these tables anew drops its triggers with the old table: it makes
-- them again (test/unit/listVersion.test.ts fails otherwise). Of volumes
-- the list reads the id, owner and name alone.
CREATE TABLE list_version (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  n  INTEGER NOT NULL
) STRICT;
INSERT INTO list_version (id, n) VALUES (1, 0);
CREATE TRIGGER sessions_listed_insert AFTER INSERT ON sessions BEGIN UPDATE list_version SET n = n + 1; END;
CREATE TRIGGER sessions_listed_update AFTER UPDATE ON sessions BEGIN UPDATE list_version SET n = n + 1; END;
CREATE TRIGGER sessions_listed_delete AFTER DELETE ON sessions BEGIN UPDATE list_version SET n = n + 1; END;
CREATE TRIGGER ip_leases_listed_insert AFTER INSERT ON ip_leases BEGIN UPDATE list_version SET n = n + 1; END;
CREATE TRIGGER ip_leases_listed_update AFTER UPDATE ON ip_leases BEGIN UPDATE list_version SET n = n + 1; END;
CREATE TRIGGER ip_leases_listed_delete AFTER DELETE ON ip_leases BEGIN UPDATE list_version SET n = n + 1; END;
CREATE TRIGGER published_ports_listed_insert AFTER INSERT ON published_ports BEGIN UPDATE list_version SET n = n + 1; END;
CREATE TRIGGER published_ports_listed_update AFTER UPDATE ON published_ports BEGIN UPDATE list_version SET n = n + 1; END;
CREATE TRIGGER published_ports_listed_delete AFTER DELETE ON published_ports BEGIN UPDATE list_version SET n = n + 1; END;
CREATE TRIGGER session_secrets_listed_insert AFTER INSERT ON session_secrets BEGIN UPDATE list_version SET n = n + 1; END;
CREATE TRIGGER session_secrets_listed_update AFTER UPDATE ON session_secrets BEGIN UPDATE list_version SET n = n + 1; END;
CREATE TRIGGER session_secrets_listed_delete AFTER DELETE ON session_secrets BEGIN UPDATE list_version SET n = n + 1; END;
CREATE TRIGGER session_volumes_listed_insert AFTER INSERT ON session_volumes BEGIN UPDATE list_version SET n = n + 1; END;
CREATE TRIGGER session_volumes_listed_update AFTER UPDATE ON session_volumes BEGIN UPDATE list_version SET n = n + 1; END;
CREATE TRIGGER session_volumes_listed_delete AFTER DELETE ON session_volumes BEGIN UPDATE list_version SET n = n + 1; END;
CREATE TRIGGER volumes_listed_insert AFTER INSERT ON volumes BEGIN UPDATE list_version SET n = n + 1; END;
CREATE TRIGGER volumes_listed_update AFTER UPDATE OF id, owner_uid, name ON volumes BEGIN UPDATE list_version SET n = n + 1; END;
CREATE TRIGGER volumes_listed_delete AFTER DELETE ON volumes BEGIN UPDATE list_version SET n = n + 1; END;
