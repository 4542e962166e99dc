-- Approve in part (amount_cents becomes what was approved; requested_cents keeps what was asked) and the second
-- approval above a configured amount: the first approver waits in the case until another operator confirms.
ALTER TABLE billing.refund_cases
    ADD COLUMN requested_cents      bigint,
    ADD COLUMN first_approver       text        NOT NULL DEFAULT '',
    ADD COLUMN first_approved_at    timestamptz,
    ADD COLUMN first_approved_cents bigint;
