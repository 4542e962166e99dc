-- Opt-in auto top-up: when a balance change (or a new hold) takes the available balance below the
-- contractor's threshold, the same transaction starts one auto top-up (a wallet.top_ups row and an outbox
-- event), as the paused flag is flipped in the transaction that crosses the pause line.

-- The threshold in the wallet row itself (0: auto top-up off), so apply_balance reads nothing more for the
-- wallets that have none.
ALTER TABLE wallet.wallets ADD COLUMN auto_top_up_threshold_cents bigint NOT NULL DEFAULT 0
    CHECK (auto_top_up_threshold_cents >= 0);

CREATE TABLE wallet.auto_top_ups (
    contractor_id          text        PRIMARY KEY REFERENCES wallet.wallets,
    enabled                boolean     NOT NULL DEFAULT false,
    threshold_cents        bigint      NOT NULL DEFAULT 0 CHECK (threshold_cents >= 0),
    amount_cents           bigint      NOT NULL DEFAULT 0 CHECK (amount_cents >= 0),
    max_per_day_cents      bigint      NOT NULL DEFAULT 0 CHECK (max_per_day_cents >= 0),
    max_per_hour           integer     NOT NULL DEFAULT 3 CHECK (max_per_hour > 0),
    email                  text        NOT NULL DEFAULT '',
    -- The provider's Customer for this contractor and the card saved on it (a SetupIntent that succeeded).
    customer_id            text        NOT NULL DEFAULT '',
    payment_method_id      text        NOT NULL DEFAULT '',
    card_brand             text        NOT NULL DEFAULT '',
    card_last4             text        NOT NULL DEFAULT '',
    -- When the contractor last agreed to unscheduled charges of that card (turning auto top-up on).
    consented_at           timestamptz,
    -- True when the next fall below the threshold starts an auto top-up; re-armed once back above it.
    armed                  boolean     NOT NULL DEFAULT true,
    consecutive_declines   integer     NOT NULL DEFAULT 0,
    disabled_reason        text        NOT NULL DEFAULT '',
    updated_at             timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT enabled_has_card_and_consent
        CHECK (NOT enabled OR (payment_method_id <> '' AND consented_at IS NOT NULL AND amount_cents >= 2500
                               AND max_per_day_cents >= amount_cents AND email <> ''))
);

-- Card setups started for a contractor (SetupIntents): the card is saved once the provider says one
-- succeeded, learned from the webhook or by asking.
CREATE TABLE wallet.card_setups (
    setup_intent_id  text        PRIMARY KEY,
    contractor_id    text        NOT NULL REFERENCES wallet.wallets,
    customer_id      text        NOT NULL,
    state            text        NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'succeeded', 'failed')),
    created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX card_setups_pending ON wallet.card_setups (contractor_id) WHERE state = 'pending';

-- Called with the wallet row locked, after a balance change or a new hold. The crossing is judged on the
-- available balance (balance minus open holds) against the higher of the contractor's threshold and the
-- pause line, so a top-up never starts only after the pause. Fires once per fall (the armed flag), at most
-- one in flight (top_ups_one_auto_in_flight), never past the daily maximum; the runaway breaker turns auto
-- top-up off when another would exceed max_per_hour within an hour.
CREATE FUNCTION wallet.judge_auto_top_up(p_contractor_id text, p_balance_cents bigint, p_pause_cents bigint)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    a wallet.auto_top_ups;
    held bigint;
    line bigint;
    last_hour integer;
    last_day bigint;
    new_id uuid := gen_random_uuid();
BEGIN
    SELECT * INTO a FROM wallet.auto_top_ups x WHERE x.contractor_id = p_contractor_id FOR UPDATE;
    IF NOT FOUND OR NOT a.enabled THEN
        RETURN;
    END IF;
    SELECT coalesce(sum(h.amount_cents), 0) INTO held FROM wallet.reservations h
     WHERE h.contractor_id = p_contractor_id AND h.state = 'open' AND h.expires_at > now();
    line := greatest(a.threshold_cents, p_pause_cents);
    IF p_balance_cents - held >= line THEN
        IF NOT a.armed THEN
            UPDATE wallet.auto_top_ups x SET armed = true, updated_at = now() WHERE x.contractor_id = p_contractor_id;
        END IF;
        RETURN;
    END IF;
    IF NOT a.armed OR EXISTS (SELECT 1 FROM wallet.top_ups t WHERE t.contractor_id = p_contractor_id
                                 AND t.origin = 'auto' AND t.state IN ('requested', 'pending')) THEN
        RETURN;
    END IF;
    UPDATE wallet.auto_top_ups x SET armed = false, updated_at = now() WHERE x.contractor_id = p_contractor_id;
    SELECT count(*) INTO last_hour FROM wallet.top_ups t
     WHERE t.contractor_id = p_contractor_id AND t.origin = 'auto' AND t.created_at > now() - interval '1 hour';
    IF last_hour >= a.max_per_hour THEN
        PERFORM wallet.disable_auto_top_up(p_contractor_id, 'breaker', format(
            'it was about to charge your card a %s time within an hour (the limit is %s)', last_hour + 1,
            a.max_per_hour));
        RETURN;
    END IF;
    SELECT coalesce(sum(t.amount_cents), 0) INTO last_day FROM wallet.top_ups t
     WHERE t.contractor_id = p_contractor_id AND t.origin = 'auto' AND t.created_at > now() - interval '24 hours'
       AND t.state NOT IN ('failed', 'canceled', 'refused');
    IF last_day + a.amount_cents > a.max_per_day_cents THEN
        INSERT INTO wallet.outbox (topic, payload) VALUES ('wallet.payment_email', jsonb_build_object(
            'kind', 'daily_max', 'contractor_id', p_contractor_id, 'email', a.email,
            'amount_cents', a.amount_cents, 'max_per_day_cents', a.max_per_day_cents, 'charged_cents', last_day,
            'balance_cents', p_balance_cents));
        RETURN;
    END IF;
    INSERT INTO wallet.top_ups (top_up_id, contractor_id, origin, amount_cents, state, email)
    VALUES (new_id, p_contractor_id, 'auto', a.amount_cents, 'requested', a.email);
    INSERT INTO wallet.outbox (topic, payload) VALUES ('wallet.auto_top_up', jsonb_build_object(
        'top_up_id', new_id, 'contractor_id', p_contractor_id, 'amount_cents', a.amount_cents));
END $$;

-- Turns auto top-up off for a reason of the system's (kind: breaker, declines) and emails the contractor.
CREATE FUNCTION wallet.disable_auto_top_up(p_contractor_id text, p_kind text, p_detail text)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    a wallet.auto_top_ups;
BEGIN
    UPDATE wallet.auto_top_ups x SET enabled = false, disabled_reason = p_detail, updated_at = now()
     WHERE x.contractor_id = p_contractor_id AND x.enabled
    RETURNING * INTO a;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    UPDATE wallet.wallets x SET auto_top_up_threshold_cents = 0 WHERE x.contractor_id = p_contractor_id;
    INSERT INTO wallet.outbox (topic, payload) VALUES ('wallet.payment_email', jsonb_build_object(
        'kind', 'disabled_' || p_kind, 'contractor_id', p_contractor_id, 'email', a.email, 'detail', p_detail));
END $$;

-- As migration 0001's, plus the auto top-up judgement for wallets that have it on.
CREATE OR REPLACE FUNCTION wallet.apply_balance(w wallet.wallets, new_balance bigint) RETURNS wallet.wallets
LANGUAGE plpgsql AS $$
DECLARE
    now_paused boolean := new_balance < w.pause_threshold_cents;
    below_alert boolean := w.alert_threshold_cents > 0 AND new_balance < w.alert_threshold_cents;
BEGIN
    IF now_paused IS DISTINCT FROM w.paused THEN
        INSERT INTO wallet.outbox (topic, payload) VALUES ('wallet.pause_changed', jsonb_build_object(
            'contractor_id', w.contractor_id, 'paused', now_paused,
            'balance_cents', new_balance, 'pause_threshold_cents', w.pause_threshold_cents));
    END IF;
    IF below_alert AND w.alert_armed AND w.alert_email <> '' THEN
        INSERT INTO wallet.outbox (topic, payload) VALUES ('wallet.low_balance_email', jsonb_build_object(
            'contractor_id', w.contractor_id, 'email', w.alert_email,
            'balance_cents', new_balance, 'alert_threshold_cents', w.alert_threshold_cents));
    END IF;
    UPDATE wallet.wallets
       SET balance_cents = new_balance, paused = now_paused, alert_armed = NOT below_alert, updated_at = now(),
           pause_threshold_cents = w.pause_threshold_cents, alert_threshold_cents = w.alert_threshold_cents,
           alert_email = w.alert_email
     WHERE contractor_id = w.contractor_id
    RETURNING * INTO w;
    IF w.auto_top_up_threshold_cents > 0 THEN
        PERFORM wallet.judge_auto_top_up(w.contractor_id, new_balance, w.pause_threshold_cents);
    END IF;
    RETURN w;
END $$;

-- As migration 0003's, plus a new hold is judged for auto top-up: holds lower the available balance.
CREATE OR REPLACE FUNCTION wallet.reserve(
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
    -- A hold moves no money: its commit need not wait for the WAL flush (see migration 0003).
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
    IF w.auto_top_up_threshold_cents > 0 THEN
        PERFORM wallet.judge_auto_top_up(p_contractor_id, w.balance_cents, w.pause_threshold_cents);
    END IF;
    RETURN QUERY SELECT 'applied', r.reservation_id, r.amount_cents, r.expires_at, r.state,
                        w.balance_cents - held - p_amount_cents, w.balance_cents, w.pause_threshold_cents,
                        r.captured_cents, r.capture_entry_id, now();
END $$;

-- SetAutoTopUp: settings and consent, then a judgement now (a balance already below the new threshold
-- starts one at once, as a new low-balance alert emails at once).
CREATE FUNCTION wallet.set_auto_top_up(
    p_contractor_id text, p_enabled boolean, p_threshold_cents bigint, p_amount_cents bigint,
    p_max_per_day_cents bigint, p_max_per_hour integer, p_email text
) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    w wallet.wallets;
    a wallet.auto_top_ups;
BEGIN
    SELECT * INTO w FROM wallet.wallets x WHERE x.contractor_id = p_contractor_id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN 'no_wallet';
    END IF;
    INSERT INTO wallet.auto_top_ups (contractor_id) VALUES (p_contractor_id) ON CONFLICT DO NOTHING;
    SELECT * INTO a FROM wallet.auto_top_ups x WHERE x.contractor_id = p_contractor_id FOR UPDATE;
    IF NOT p_enabled THEN
        UPDATE wallet.auto_top_ups x SET enabled = false, disabled_reason = '', updated_at = now()
         WHERE x.contractor_id = p_contractor_id;
        UPDATE wallet.wallets x SET auto_top_up_threshold_cents = 0 WHERE x.contractor_id = p_contractor_id;
        RETURN 'applied';
    END IF;
    IF a.payment_method_id = '' THEN
        RETURN 'no_card';
    END IF;
    IF p_threshold_cents < w.pause_threshold_cents THEN
        RETURN 'below_pause_line';
    END IF;
    UPDATE wallet.auto_top_ups x
       SET enabled = true, threshold_cents = p_threshold_cents, amount_cents = p_amount_cents,
           max_per_day_cents = p_max_per_day_cents, max_per_hour = p_max_per_hour, email = p_email,
           consented_at = now(), armed = true, consecutive_declines = 0, disabled_reason = '', updated_at = now()
     WHERE x.contractor_id = p_contractor_id;
    UPDATE wallet.wallets x SET auto_top_up_threshold_cents = p_threshold_cents
     WHERE x.contractor_id = p_contractor_id;
    PERFORM wallet.judge_auto_top_up(p_contractor_id, w.balance_cents, w.pause_threshold_cents);
    RETURN 'applied';
END $$;
