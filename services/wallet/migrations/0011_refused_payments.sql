-- PaymentIntents the wallet refused to credit: one naming another contractor, currency or amount than its
-- top-up, a top-up already paid by another PaymentIntent, or a top-up the wallet has no record of. Kept so a
-- card payment that credited nothing is never only a log line: `callersync reconcile` fails while one of them
-- has succeeded at the provider and no operator has settled it (refunded at Stripe, or credited by hand).
CREATE TABLE wallet.refused_payments (
    payment_intent_id  text        PRIMARY KEY,
    -- As the PaymentIntent's metadata names them ('' when it names none).
    top_up_id          text        NOT NULL DEFAULT '',
    contractor_id      text        NOT NULL DEFAULT '',
    -- The provider's figures when the wallet last asked.
    status             text        NOT NULL,
    amount_cents       bigint      NOT NULL,
    received_cents     bigint      NOT NULL DEFAULT 0,
    currency           text        NOT NULL,
    reason             text        NOT NULL,
    -- What the operator did about it, in writing; '' while open.
    settled_note       text        NOT NULL DEFAULT '',
    first_seen_at      timestamptz NOT NULL DEFAULT now(),
    last_seen_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX refused_payments_open ON wallet.refused_payments (first_seen_at) WHERE settled_note = '';
