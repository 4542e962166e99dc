-- Which contractors each rated call rang, so a contractor's calls (free ones too, which have no payer and no
-- charge) list newest first from an index instead of decoding every call's facts. Written in the transaction
-- that stores the call's decision; never updated (a decision never changes).
CREATE TABLE billing.call_contractors (
    call_id        text        NOT NULL REFERENCES billing.rated_calls (call_id),
    contractor_id  text        NOT NULL,
    started_at     timestamptz NOT NULL,
    -- Whether this contractor is the call's payer, and the rated price they were charged (0 when not).
    payer          boolean     NOT NULL,
    charged_cents  bigint      NOT NULL CHECK (charged_cents >= 0),
    PRIMARY KEY (call_id, contractor_id)
);
CREATE INDEX call_contractors_by_contractor
    ON billing.call_contractors (contractor_id, started_at DESC, call_id DESC);

-- Calls rated before this table existed: their payers are columns, so they are listed for the payer; the
-- contractors a free leg rang are only in the serialized facts, which SQL cannot read, so those stay unlisted.
INSERT INTO billing.call_contractors (call_id, contractor_id, started_at, payer, charged_cents)
SELECT call_id, payer_contractor_id, started_at, true, price_cents
FROM billing.rated_calls WHERE billable AND payer_contractor_id <> ''
ON CONFLICT DO NOTHING;
