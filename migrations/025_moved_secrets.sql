-- A secret a drain's move stored on this node from the kit of the session
-- it moves (src/daemon/moveKitHere.ts adoptKit), when its owner had none of
-- that name here: an undone move, or a create of that session here that
-- failed, removes it unless another live session of this node declares it;
-- once the move is over here (or the owner sets it), it is the owner's like
-- any other. NULL for any other secret.
ALTER TABLE secrets ADD COLUMN moved_for TEXT;
