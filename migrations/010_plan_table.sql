-- Plans move out of the sessions row. A plan is several KB, stored in
-- overflow pages, and the columns added after it (exit, stop reason, owner,
-- profile) sit behind it in the record: every scan of sessions (list, start)
-- read each row's whole plan to reach them. A listing at 500 sessions spent
-- most of its time there (stress/results/before-scale.seed21.txt).
CREATE TABLE session_plans (
  session_id TEXT PRIMARY KEY REFERENCES sessions (id),
  plan       TEXT NOT NULL
) STRICT;
INSERT INTO session_plans (session_id, plan) SELECT id, plan FROM sessions WHERE plan IS NOT NULL;
ALTER TABLE sessions DROP COLUMN plan;
