-- SSH into a session: the public key it was created with (root's
-- authorized key; sshd runs inside while it does). NULL: no sshd.
ALTER TABLE sessions ADD COLUMN ssh_key TEXT;
