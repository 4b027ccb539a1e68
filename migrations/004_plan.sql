-- The plan a session was created with (src/isolation/plan.ts), as JSON.
-- Sessions created before this migration have none: exec into them is
-- refused with a clear message (they were built by enclave-enter's era).
ALTER TABLE sessions ADD COLUMN plan TEXT;
