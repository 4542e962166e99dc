-- Refunds approved at once because the charge has no recording or transcript are limited per contractor per
-- rolling 30 days (the rest wait for an operator): this flag marks the approvals that count, and the index
-- lets the count read only them.
ALTER TABLE billing.refund_cases ADD COLUMN counts_as_auto_approval boolean NOT NULL DEFAULT false;
CREATE INDEX refund_cases_auto_approvals ON billing.refund_cases (contractor_id, requested_at)
    WHERE counts_as_auto_approval;
