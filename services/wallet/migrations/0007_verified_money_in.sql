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

-- The manual credit path: as migration 0002's post_entry, plus a TOP_UP is an operator's credit and its
-- payment reference is credited once ('reference_used' names the entry that has it).
CREATE OR REPLACE FUNCTION wallet.post_entry(
    p_contractor_id text, p_kind text, p_amount_cents bigint, p_idempotency_key text, p_request_hash bytea,
    p_reference text, p_description text, p_refund_of_entry_id bigint, p_reservation_id uuid
) RETURNS wallet.post_outcome
LANGUAGE plpgsql AS $$
DECLARE
    w wallet.wallets;
    e wallet.entries;
    orig wallet.entries;
    r wallet.reservations;
    signed_cents bigint := CASE WHEN p_kind IN ('charge', 'capture') THEN -p_amount_cents ELSE p_amount_cents END;
    already_refunded bigint;
BEGIN
    SELECT * INTO e FROM wallet.entries WHERE idempotency_key = p_idempotency_key;
    IF FOUND THEN
        RETURN wallet.outcome_of(e, p_request_hash);
    END IF;
    IF p_kind = 'top_up' THEN
        INSERT INTO wallet.wallets (contractor_id) VALUES (p_contractor_id) ON CONFLICT DO NOTHING;
    END IF;
    SELECT * INTO w FROM wallet.wallets WHERE contractor_id = p_contractor_id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN ROW('no_wallet', NULL, p_contractor_id, p_kind, NULL, NULL, p_idempotency_key,
                   NULL, NULL, NULL, NULL, NULL, NULL)::wallet.post_outcome;
    END IF;
    -- A concurrent twin may have committed while we waited for the wallet lock: its answer is ours,
    -- not a refusal because the reservation it captured is no longer open.
    SELECT * INTO e FROM wallet.entries WHERE idempotency_key = p_idempotency_key;
    IF FOUND THEN
        RETURN wallet.outcome_of(e, p_request_hash);
    END IF;
    IF p_kind = 'top_up' THEN
        SELECT * INTO e FROM wallet.entries
         WHERE kind = 'top_up' AND reference = p_reference AND credit_source IN ('card', 'operator');
        IF FOUND THEN
            RETURN ROW('reference_used', e.entry_id, p_contractor_id, p_kind, NULL, NULL, p_idempotency_key,
                       p_reference, NULL, NULL, NULL, NULL, NULL)::wallet.post_outcome;
        END IF;
    ELSIF p_kind = 'capture' THEN
        SELECT * INTO r FROM wallet.reservations
         WHERE reservation_id = p_reservation_id AND contractor_id = p_contractor_id;
        IF NOT FOUND OR r.state <> 'open' THEN
            RETURN ROW(CASE WHEN NOT FOUND THEN 'no_reservation' ELSE 'reservation_' || r.state END,
                       r.capture_entry_id, p_contractor_id, p_kind, NULL, NULL, p_idempotency_key, NULL, NULL,
                       NULL, p_reservation_id, NULL, r.captured_cents)::wallet.post_outcome;
        END IF;
    ELSIF p_kind = 'refund' THEN
        SELECT * INTO orig FROM wallet.entries
         WHERE entry_id = p_refund_of_entry_id AND contractor_id = p_contractor_id;
        IF NOT FOUND OR orig.kind NOT IN ('charge', 'capture') THEN
            RETURN ROW('no_charge', NULL, p_contractor_id, p_kind, NULL, NULL, p_idempotency_key, NULL, NULL,
                       p_refund_of_entry_id, NULL, NULL, NULL)::wallet.post_outcome;
        END IF;
        SELECT entry_id INTO already_refunded FROM wallet.entries WHERE refund_of_entry_id = orig.entry_id;
        IF FOUND THEN
            RETURN ROW('already_refunded', already_refunded, p_contractor_id, p_kind, NULL, NULL,
                       p_idempotency_key, NULL, NULL, orig.entry_id, NULL, NULL, NULL)::wallet.post_outcome;
        END IF;
        IF p_amount_cents > -orig.amount_cents THEN
            RETURN ROW('exceeds_charge', NULL, p_contractor_id, p_kind, NULL, NULL, p_idempotency_key, NULL,
                       NULL, orig.entry_id, NULL, NULL, -orig.amount_cents)::wallet.post_outcome;
        END IF;
    END IF;

    -- No conflict target: a reference committed meanwhile on another wallet's lock must not abort the
    -- group-committed batch this call is part of.
    INSERT INTO wallet.entries (contractor_id, kind, amount_cents, balance_after_cents, idempotency_key,
                                request_hash, reference, description, refund_of_entry_id, reservation_id,
                                credit_source)
    VALUES (p_contractor_id, p_kind, signed_cents, w.balance_cents + signed_cents, p_idempotency_key,
            p_request_hash, coalesce(p_reference, ''), coalesce(p_description, ''),
            p_refund_of_entry_id, p_reservation_id, CASE WHEN p_kind = 'top_up' THEN 'operator' END)
    ON CONFLICT DO NOTHING
    RETURNING * INTO e;
    IF NOT FOUND THEN
        -- The same key committed meanwhile on another wallet's lock: answer as a retry would.
        SELECT * INTO e FROM wallet.entries WHERE idempotency_key = p_idempotency_key;
        IF FOUND THEN
            RETURN wallet.outcome_of(e, p_request_hash);
        END IF;
        RETURN ROW('reference_used', NULL, p_contractor_id, p_kind, NULL, NULL, p_idempotency_key,
                   p_reference, NULL, NULL, NULL, NULL, NULL)::wallet.post_outcome;
    END IF;

    PERFORM wallet.apply_balance(w, w.balance_cents + signed_cents);
    IF p_kind = 'capture' THEN
        UPDATE wallet.reservations
           SET state = 'captured', captured_cents = p_amount_cents, capture_entry_id = e.entry_id,
               settled_at = now()
         WHERE reservation_id = p_reservation_id;
    END IF;
    RETURN ROW('applied', e.entry_id, e.contractor_id, e.kind, e.amount_cents, e.balance_after_cents,
               e.idempotency_key, e.reference, e.description, e.refund_of_entry_id, e.reservation_id,
               e.created_at, NULL)::wallet.post_outcome;
END $$;

-- The verified path: credits a top-up by the amount the provider received for its PaymentIntent, once.
-- The caller has checked the PaymentIntent with the provider (succeeded, this contractor, this currency,
-- this top-up). A receipt email goes in the outbox with the credit.
CREATE FUNCTION wallet.credit_payment(
    p_top_up_id uuid, p_payment_intent_id text, p_received_cents bigint, p_card_brand text, p_card_last4 text
) RETURNS TABLE (outcome text, entry_id bigint, balance_after_cents bigint)
LANGUAGE plpgsql AS $$
DECLARE
    t wallet.top_ups;
    w wallet.wallets;
    e wallet.entries;
BEGIN
    SELECT * INTO t FROM wallet.top_ups x WHERE x.top_up_id = p_top_up_id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'unknown', NULL::bigint, NULL::bigint;
        RETURN;
    END IF;
    IF t.entry_id IS NOT NULL THEN
        SELECT * INTO e FROM wallet.entries x WHERE x.entry_id = t.entry_id;
        RETURN QUERY SELECT 'already_credited', e.entry_id, e.balance_after_cents;
        RETURN;
    END IF;
    IF t.payment_intent_id IS DISTINCT FROM p_payment_intent_id AND t.payment_intent_id IS NOT NULL THEN
        RETURN QUERY SELECT 'other_payment_intent', NULL::bigint, NULL::bigint;
        RETURN;
    END IF;
    INSERT INTO wallet.wallets (contractor_id) VALUES (t.contractor_id) ON CONFLICT DO NOTHING;
    SELECT * INTO w FROM wallet.wallets x WHERE x.contractor_id = t.contractor_id FOR UPDATE;
    INSERT INTO wallet.entries (contractor_id, kind, amount_cents, balance_after_cents, idempotency_key,
                                request_hash, reference, description, credit_source)
    VALUES (t.contractor_id, 'top_up', p_received_cents, w.balance_cents + p_received_cents,
            'payment:' || p_payment_intent_id, sha256(convert_to(p_payment_intent_id, 'UTF8')),
            p_payment_intent_id,
            CASE t.origin WHEN 'auto' THEN 'Auto top-up' ELSE 'Card top-up' END
                || CASE WHEN p_card_last4 <> '' THEN ' (' || p_card_brand || ' ending ' || p_card_last4 || ')'
                        ELSE '' END,
            'card')
    ON CONFLICT DO NOTHING
    RETURNING * INTO e;
    IF NOT FOUND THEN
        -- The PaymentIntent was credited already (its reference is unique): never twice.
        SELECT * INTO e FROM wallet.entries x WHERE x.idempotency_key = 'payment:' || p_payment_intent_id
            OR (x.kind = 'top_up' AND x.reference = p_payment_intent_id AND x.credit_source IN ('card', 'operator'));
        RETURN QUERY SELECT 'already_credited', e.entry_id, e.balance_after_cents;
        RETURN;
    END IF;
    PERFORM wallet.apply_balance(w, w.balance_cents + p_received_cents);
    UPDATE wallet.top_ups x
       SET state = 'credited', entry_id = e.entry_id, credited_cents = p_received_cents,
           payment_intent_id = p_payment_intent_id, card_brand = p_card_brand, card_last4 = p_card_last4,
           failure_code = '', failure_reason = '', updated_at = now()
     WHERE x.top_up_id = t.top_up_id;
    IF t.email <> '' THEN
        INSERT INTO wallet.outbox (topic, payload) VALUES ('wallet.payment_email', jsonb_build_object(
            'kind', 'receipt', 'contractor_id', t.contractor_id, 'email', t.email, 'top_up_id', t.top_up_id,
            'origin', t.origin, 'amount_cents', p_received_cents, 'card_brand', p_card_brand,
            'card_last4', p_card_last4, 'balance_cents', e.balance_after_cents));
    END IF;
    RETURN QUERY SELECT 'credited', e.entry_id, e.balance_after_cents;
END $$;
