-- --init systemd (issue 26): what a session boots inside besides Enclave's
-- own init; NULL is nothing. Only a system session may (checked at create).
ALTER TABLE sessions ADD COLUMN init TEXT CHECK (init IS NULL OR init IN ('systemd'));
