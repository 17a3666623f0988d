-- The audit log stays append-only against TRUNCATE too (a statement, not a row, event:
-- the row triggers of 0001 do not fire for it).
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();
