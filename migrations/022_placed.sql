-- Fleet mode: a session made for a placement of the fleet (src/fleet/
-- worker.ts), not one this daemon had before it joined a fleet. Only such a
-- copy must be placed on this node to start (a copy placed nowhere is an old
-- one: src/daemon/handlers/sessions.ts); a session from before the fleet was
-- never placed, and starts as it did.
ALTER TABLE sessions ADD COLUMN placed INTEGER NOT NULL DEFAULT 0 CHECK (placed IN (0, 1));
