-- The approval is bound to what runs (issue 12): `bound` holds the facts execution must use
-- exactly (JSON, for example a service's spec version), `changes` what approvers were shown
-- (JSON list of safe lines: values masked or hashed), `attachment` the redacted preview posted
-- with the request. All nullable: rows of older versions bind by digest only.
ALTER TABLE approvals ADD COLUMN bound TEXT;
ALTER TABLE approvals ADD COLUMN changes TEXT;
ALTER TABLE approvals ADD COLUMN attachment TEXT;
