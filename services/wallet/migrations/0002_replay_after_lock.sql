-- Concurrent identical requests: the one that waited for the wallet lock replays the winner's entry.
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
    IF p_kind = 'capture' THEN
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

    INSERT INTO wallet.entries (contractor_id, kind, amount_cents, balance_after_cents, idempotency_key,
                                request_hash, reference, description, refund_of_entry_id, reservation_id)
    VALUES (p_contractor_id, p_kind, signed_cents, w.balance_cents + signed_cents, p_idempotency_key,
            p_request_hash, coalesce(p_reference, ''), coalesce(p_description, ''),
            p_refund_of_entry_id, p_reservation_id)
    ON CONFLICT (idempotency_key) DO NOTHING
    RETURNING * INTO e;
    IF NOT FOUND THEN
        -- The same key committed meanwhile on another wallet's lock: answer as a retry would.
        SELECT * INTO e FROM wallet.entries WHERE idempotency_key = p_idempotency_key;
        RETURN wallet.outcome_of(e, p_request_hash);
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

-- Billing settles a finished call by its id: capture the payer's reservation, release the others.
CREATE INDEX reservations_by_call ON wallet.reservations (call_id);
