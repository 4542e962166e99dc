-- Money enters a wallet only from a card payment verified with the payment provider or from an operator's
-- manual credit with a written reason (issue 14). Every TOP_UP entry now says which (credit_source); a
-- payment reference is credited once; card and auto top-ups are tracked in wallet.top_ups.

-- Entries written before this migration read 'legacy' (the column's default when it was added, kept for
-- those rows by PostgreSQL without rewriting them); new rows name their source, and only top-ups have one.
ALTER TABLE wallet.entries ADD COLUMN credit_source text DEFAULT 'legacy';
ALTER TABLE wallet.entries ALTER COLUMN credit_source DROP DEFAULT;
ALTER TABLE wallet.entries ADD CONSTRAINT top_up_has_source
    CHECK (kind <> 'top_up' OR credit_source IN ('card', 'operator', 'legacy'));
ALTER TABLE wallet.entries ADD CONSTRAINT operator_credit_has_reason
    CHECK (credit_source IS DISTINCT FROM 'operator' OR btrim(description) <> '');
-- A payment reference (a PaymentIntent id, an operator's bank transfer id) is credited once, whichever key.
CREATE UNIQUE INDEX entries_payment_reference ON wallet.entries (reference)
    WHERE kind = 'top_up' AND credit_source IN ('card', 'operator');

-- One row per card top-up (StartTopUp) or auto top-up (fired by wallet.judge_auto_top_up). A top-up is
-- credited at most once (entry_id unique) and a PaymentIntent belongs to at most one top-up.
CREATE TABLE wallet.top_ups (
    top_up_id          uuid        PRIMARY KEY,
    contractor_id      text        NOT NULL,
    origin             text        NOT NULL CHECK (origin IN ('card', 'auto')),
    amount_cents       bigint      NOT NULL CHECK (amount_cents > 0),
    currency           text        NOT NULL DEFAULT 'usd',
    state              text        NOT NULL CHECK (state IN ('requested', 'pending', 'requires_action', 'credited',
                                                             'failed', 'canceled', 'refused')),
    email              text        NOT NULL DEFAULT '',
    -- StartTopUp's key and request hash (card top-ups): a retry returns the same top-up and PaymentIntent.
    idempotency_key    text        UNIQUE,
    request_hash       bytea,
    payment_intent_id  text        UNIQUE,
    entry_id           bigint      UNIQUE REFERENCES wallet.entries,
    credited_cents     bigint,
    failure_code       text        NOT NULL DEFAULT '',
    failure_reason     text        NOT NULL DEFAULT '',
    card_brand         text        NOT NULL DEFAULT '',
    card_last4         text        NOT NULL DEFAULT '',
    -- Provider calls made for an auto top-up, and when the next may be made (backoff after a transient error,
    -- and a lease while one is running).
    attempts           integer     NOT NULL DEFAULT 0,
    next_attempt_at    timestamptz NOT NULL DEFAULT now(),
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT credited_has_entry CHECK ((state = 'credited') = (entry_id IS NOT NULL))
);
CREATE INDEX top_ups_open ON wallet.top_ups (next_attempt_at) WHERE state IN ('requested', 'pending', 'requires_action');
CREATE INDEX top_ups_by_contractor ON wallet.top_ups (contractor_id, created_at);
-- At most one auto top-up in flight per wallet.
CREATE UNIQUE INDEX top_ups_one_auto_in_flight ON wallet.top_ups (contractor_id)
    WHERE origin = 'auto' AND state IN ('requested', 'pending');
