-- Billing settles finished calls in batches: one statement per batch calls wallet.settle_call per item,
-- where a call used to cost ListCallReservations, Capture (or Charge) and a Release per other hold.
--
-- The keys are Capture's and Charge's own (`capture:<reservation id>` with Capture's request hash, else the
-- item's charge key with Charge's), so a re-send, or a call settled partly by the single RPCs, replays the
-- entry instead of moving money twice. The payer's wallet is locked first, so every decision about which
-- key applies is taken under the lock that serialises that wallet's postings. The usual case (an open hold,
-- or no hold and an unused key) is written here directly, in about half the statements post_entry's
-- general path takes; anything unusual (a key taken meanwhile by another wallet) goes through post_entry.
CREATE FUNCTION wallet.settle_call(
    p_call_id text, p_payer text, p_amount_cents bigint, p_charge_key text, p_charge_hash bytea,
    p_reference text, p_description text, p_reservation_id uuid, p_capture_hash bytea
) RETURNS TABLE (outcome text, entry_id bigint, contractor_id text, kind text, amount_cents bigint,
                 balance_after_cents bigint, idempotency_key text, reference text, description text,
                 refund_of_entry_id bigint, reservation_id uuid, created_at timestamptz, detail_cents bigint)
LANGUAGE plpgsql AS $$
DECLARE
    o wallet.post_outcome;
    w wallet.wallets;
    e wallet.entries;
    r wallet.reservations;
    captured uuid;
BEGIN
    IF p_payer <> '' THEN
        SELECT * INTO w FROM wallet.wallets x WHERE x.contractor_id = p_payer FOR UPDATE;
        IF NOT FOUND THEN
            RETURN QUERY SELECT 'no_wallet', NULL::bigint, p_payer, 'charge', NULL::bigint, NULL::bigint,
                                p_charge_key, NULL::text, NULL::text, NULL::bigint, NULL::uuid,
                                NULL::timestamptz, NULL::bigint;
            RETURN;
        END IF;
        -- Charged before (the hold was gone then): that entry is the call's debit whatever the hold is now.
        SELECT * INTO e FROM wallet.entries x WHERE x.idempotency_key = p_charge_key;
        IF FOUND THEN
            o := wallet.outcome_of(e, p_charge_hash);
        ELSE
            SELECT * INTO r FROM wallet.reservations h WHERE h.contractor_id = p_payer AND h.call_id = p_call_id;
            IF FOUND AND r.state = 'captured' THEN
                -- A replay only for the very capture asked (hold and amount); any other is a refusal.
                SELECT * INTO e FROM wallet.entries x WHERE x.entry_id = r.capture_entry_id;
                o := wallet.outcome_of(e, CASE WHEN r.reservation_id = p_reservation_id THEN p_capture_hash END);
                IF o.outcome = 'key_reused' THEN  -- captured before at another amount, as Capture says
                    o.outcome := 'reservation_captured';
                    o.detail_cents := r.captured_cents;
                END IF;
            ELSIF FOUND AND r.reservation_id = p_reservation_id AND r.state = 'open' THEN
                INSERT INTO wallet.entries (contractor_id, kind, amount_cents, balance_after_cents, idempotency_key,
                                            request_hash, reference, description, reservation_id)
                VALUES (p_payer, 'capture', -p_amount_cents, w.balance_cents - p_amount_cents,
                        'capture:' || r.reservation_id, p_capture_hash, r.reservation_id::text,
                        coalesce(p_description, ''), r.reservation_id)
                ON CONFLICT DO NOTHING
                RETURNING * INTO e;
                IF FOUND THEN
                    captured := r.reservation_id;
                END IF;
            ELSE
                INSERT INTO wallet.entries (contractor_id, kind, amount_cents, balance_after_cents, idempotency_key,
                                            request_hash, reference, description)
                VALUES (p_payer, 'charge', -p_amount_cents, w.balance_cents - p_amount_cents, p_charge_key,
                        p_charge_hash, coalesce(p_reference, ''), coalesce(p_description, ''))
                ON CONFLICT DO NOTHING
                RETURNING * INTO e;
            END IF;
            IF e.entry_id IS NOT NULL AND o.outcome IS NULL THEN  -- written just now
                PERFORM wallet.apply_balance(w, w.balance_cents - p_amount_cents);
                o := ROW('applied', e.entry_id, e.contractor_id, e.kind, e.amount_cents, e.balance_after_cents,
                         e.idempotency_key, e.reference, e.description, e.refund_of_entry_id, e.reservation_id,
                         e.created_at, NULL)::wallet.post_outcome;
            ELSIF o.outcome IS NULL THEN  -- a key taken meanwhile elsewhere: the general path answers
                o := wallet.post_entry(p_payer, 'charge', p_amount_cents, p_charge_key, p_charge_hash,
                                       p_reference, p_description, NULL, NULL);
            END IF;
        END IF;
        IF o.outcome NOT IN ('applied', 'replayed') THEN
            RETURN QUERY SELECT (o).*;
            RETURN;
        END IF;
    END IF;
    -- The payer's hold (when this settlement captured it) and every other open hold of the call, at once.
    UPDATE wallet.reservations h
       SET state = CASE WHEN h.reservation_id = captured THEN 'captured' ELSE 'released' END,
           captured_cents = CASE WHEN h.reservation_id = captured THEN p_amount_cents END,
           capture_entry_id = CASE WHEN h.reservation_id = captured THEN e.entry_id END,
           settled_at = now()
     WHERE h.call_id = p_call_id AND h.state = 'open';
    IF p_payer = '' THEN
        RETURN QUERY SELECT 'applied', NULL::bigint, NULL::text, NULL::text, NULL::bigint, NULL::bigint,
                            NULL::text, NULL::text, NULL::text, NULL::bigint, NULL::uuid, NULL::timestamptz,
                            NULL::bigint;
    ELSE
        RETURN QUERY SELECT (o).*;
    END IF;
END $$;
