-- A volume a drain's move made on this node from the kit of the session it
-- moves (src/daemon/moveKitHere.ts): the undone move, or a create of that
-- session here that failed, removes it while no live session mounts it, and
-- another try of the move makes it again, empty. NULL for any other volume.
ALTER TABLE volumes ADD COLUMN moved_for TEXT;
