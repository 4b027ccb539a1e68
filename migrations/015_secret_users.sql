-- Secrets shared with users inside a session: the user names a declared
-- secret's file is readable by (through a group of the session's own),
-- as a JSON list. NULL: the session's root only.
ALTER TABLE session_secrets ADD COLUMN users TEXT;
