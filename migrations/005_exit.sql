-- How a session's init ended (exit code or signal), apart from last_error's
-- text, and whether its end was asked for (stopping_failure: the reason a
-- daemon-initiated destroy gave, recorded before acting).
ALTER TABLE sessions ADD COLUMN exit_code INTEGER;
ALTER TABLE sessions ADD COLUMN exit_signal INTEGER;
ALTER TABLE sessions ADD COLUMN stop_reason TEXT;
