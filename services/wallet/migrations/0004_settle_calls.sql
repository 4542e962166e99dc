-- Billing settles finished calls in batches: one statement per batch calls wallet.settle_call per item,
-- where a call used to cost ListCallReservations, Capture (or Charge) and a Release per other hold.
--
-- The keys are Capture's and Charge's own (`capture:<reservation id>` with Capture's request hash, else the
-- item's charge key with Charge's), so a re-send, or a call settled partly by the single RPCs, replays the
-- entry instead of moving money twice. The payer's wallet is locked first, so every decision about which
-- key applies is taken under the lock that serialises that wallet's postings.
CREATE FUNCTION wallet.settle_call(
    p_call_id text, p_payer text, p_amount_cents bigint, p_charge_key text, p_charge_hash bytea,
    p_reference text, p_description text, p_reservation_id uuid, p_capture_hash bytea
) RETURNS TABLE (outcome text, entry_id bigint, contractor_id text, kind text, amount_cents bigint,
                 balance_after_cents bigint, idempotency_key text, reference text, description text,
                 refund_of_entry_id bigint, reservation_id uuid, created_at timestamptz, detail_cents bigint)
LANGUAGE plpgsql AS $$
DECLARE
    o wallet.post_outcome;
    e wallet.entries;
    r wallet.reservations;
BEGIN
    IF p_payer <> '' THEN
        PERFORM 1 FROM wallet.wallets w WHERE w.contractor_id = p_payer FOR UPDATE;
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
            IF FOUND AND r.reservation_id = p_reservation_id AND r.state IN ('open', 'captured') THEN
                o := wallet.post_entry(p_payer, 'capture', p_amount_cents, 'capture:' || r.reservation_id,
                                       p_capture_hash, r.reservation_id::text, p_description, NULL,
                                       r.reservation_id);
                IF o.outcome = 'key_reused' THEN  -- captured before at another amount, as Capture says
                    o.outcome := 'reservation_captured';
                    o.entry_id := r.capture_entry_id;
                    o.detail_cents := r.captured_cents;
                ELSIF o.outcome = 'reservation_released' THEN  -- routing released it a moment ago
                    o := wallet.post_entry(p_payer, 'charge', p_amount_cents, p_charge_key, p_charge_hash,
                                           p_reference, p_description, NULL, NULL);
                END IF;
            ELSE
                o := wallet.post_entry(p_payer, 'charge', p_amount_cents, p_charge_key, p_charge_hash,
                                       p_reference, p_description, NULL, NULL);
            END IF;
        END IF;
        IF o.outcome NOT IN ('applied', 'replayed') THEN
            RETURN QUERY SELECT (o).*;
            RETURN;
        END IF;
    END IF;
    -- The payer's captured hold is no longer open; every other hold of the call is freed.
    UPDATE wallet.reservations h SET state = 'released', settled_at = now()
     WHERE h.call_id = p_call_id AND h.state = 'open';
    IF p_payer = '' THEN
        RETURN QUERY SELECT 'applied', NULL::bigint, NULL::text, NULL::text, NULL::bigint, NULL::bigint,
                            NULL::text, NULL::text, NULL::text, NULL::bigint, NULL::uuid, NULL::timestamptz,
                            NULL::bigint;
    ELSE
        RETURN QUERY SELECT (o).*;
    END IF;
END $$;
