-- Fleet drain (src/fleet/move.ts): the node a session moved to, set on the
-- row of its old copy here once that copy ended. Only such a row is dropped
-- when the session moves back here under its id; a copy that ended any
-- other way (destroyed, or a move to here undone) stays ended.
ALTER TABLE sessions ADD COLUMN moved_to TEXT;
