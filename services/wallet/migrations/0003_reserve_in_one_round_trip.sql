-- Reserve answers in one round trip: the function returns everything the reply needs (the capture
-- figures of a replayed reservation and the database clock for its expiry), where the service used to
-- read the reservation and the clock back in two more queries on RouteCall's path.
--
-- It also commits without waiting for the WAL flush. A reservation moves no money: if PostgreSQL
-- crashes in the fraction of a second before the flush, the hold is lost, the call is settled by a
-- direct charge (never refused: the service was delivered), and the only cost is that the contractor
-- could be offered one more concurrent call than their balance covered. Every ledger entry still
-- commits synchronously.
DROP FUNCTION wallet.reserve(text, text, bigint, integer, uuid);

CREATE FUNCTION wallet.reserve(
    p_contractor_id text, p_call_id text, p_amount_cents bigint, p_expires_in_s integer, p_reservation_id uuid
) RETURNS TABLE (outcome text, reservation_id uuid, amount_cents bigint, expires_at timestamptz, state text,
                 available_cents bigint, balance_cents bigint, pause_threshold_cents bigint,
                 captured_cents bigint, capture_entry_id bigint, now timestamptz)
LANGUAGE plpgsql AS $$
DECLARE
    w wallet.wallets;
    r wallet.reservations;
    held bigint;
BEGIN
    -- A hold moves no money: its commit need not wait for the WAL flush (see the top of this file).
    PERFORM set_config('synchronous_commit', 'off', true);
    SELECT * INTO w FROM wallet.wallets WHERE contractor_id = p_contractor_id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'no_wallet', NULL::uuid, NULL::bigint, NULL::timestamptz, NULL::text,
                            NULL::bigint, NULL::bigint, NULL::bigint, NULL::bigint, NULL::bigint, now();
        RETURN;
    END IF;
    SELECT coalesce(sum(h.amount_cents), 0) INTO held FROM wallet.reservations h
     WHERE h.contractor_id = p_contractor_id AND h.state = 'open' AND h.expires_at > now();
    SELECT * INTO r FROM wallet.reservations h WHERE h.contractor_id = p_contractor_id AND h.call_id = p_call_id;
    IF FOUND THEN
        RETURN QUERY SELECT CASE WHEN r.amount_cents = p_amount_cents THEN 'replayed' ELSE 'call_reserved' END,
                            r.reservation_id, r.amount_cents, r.expires_at, r.state,
                            w.balance_cents - held, w.balance_cents, w.pause_threshold_cents,
                            r.captured_cents, r.capture_entry_id, now();
        RETURN;
    END IF;
    IF w.paused OR w.balance_cents - held < p_amount_cents THEN
        RETURN QUERY SELECT CASE WHEN w.paused THEN 'paused' ELSE 'insufficient_available' END,
                            NULL::uuid, NULL::bigint, NULL::timestamptz, NULL::text,
                            w.balance_cents - held, w.balance_cents, w.pause_threshold_cents,
                            NULL::bigint, NULL::bigint, now();
        RETURN;
    END IF;
    INSERT INTO wallet.reservations (reservation_id, contractor_id, call_id, amount_cents, expires_at)
    VALUES (p_reservation_id, p_contractor_id, p_call_id, p_amount_cents,
            now() + make_interval(secs => p_expires_in_s))
    RETURNING * INTO r;
    RETURN QUERY SELECT 'applied', r.reservation_id, r.amount_cents, r.expires_at, r.state,
                        w.balance_cents - held - p_amount_cents, w.balance_cents, w.pause_threshold_cents,
                        r.captured_cents, r.capture_entry_id, now();
END $$;
