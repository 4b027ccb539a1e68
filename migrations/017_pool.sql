-- Sessions made ahead (src/sessions/pool.ts): the shape a pool member was
-- made for ("workspace/bridge"), while no tenant holds it. A session with a
-- pool is nobody's: no listing, event, quota or name lookup shows it; a
-- hand-out sets it to NULL with the owner, in one transaction.
ALTER TABLE sessions ADD COLUMN pool TEXT;
