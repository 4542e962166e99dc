-- The wallet schema: wallets, the append-only ledger, reservations and the outbox.
-- Every balance change goes through wallet.post_entry, which locks the wallet row, appends the entry and
-- flips the paused flag and the alert in the same transaction.

CREATE TABLE wallet.wallets (
    contractor_id          text        PRIMARY KEY,
    balance_cents          bigint      NOT NULL DEFAULT 0,
    pause_threshold_cents  bigint      NOT NULL DEFAULT 0 CHECK (pause_threshold_cents >= 0),
    paused                 boolean     NOT NULL DEFAULT false,
    alert_threshold_cents  bigint      NOT NULL DEFAULT 0 CHECK (alert_threshold_cents >= 0),
    alert_email            text        NOT NULL DEFAULT '',
    -- True when the next fall below alert_threshold_cents sends an email.
    alert_armed            boolean     NOT NULL DEFAULT true,
    created_at             timestamptz NOT NULL DEFAULT now(),
    updated_at             timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT paused_matches_threshold CHECK (paused = (balance_cents < pause_threshold_cents))
);

CREATE TABLE wallet.entries (
    entry_id             bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    contractor_id        text        NOT NULL REFERENCES wallet.wallets,
    kind                 text        NOT NULL,
    amount_cents         bigint      NOT NULL,
    balance_after_cents  bigint      NOT NULL,
    -- The durable half of exactly-once: a retry after Redis lost the key still finds this row.
    idempotency_key      text        NOT NULL UNIQUE,
    request_hash         bytea       NOT NULL,
    reference            text        NOT NULL DEFAULT '',
    description          text        NOT NULL DEFAULT '',
    -- At most one refund per charge, and a reservation captured at most once.
    refund_of_entry_id   bigint      UNIQUE REFERENCES wallet.entries,
    reservation_id       uuid        UNIQUE,
    created_at           timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT entry_sign CHECK (
        (kind = 'top_up' AND amount_cents > 0 AND refund_of_entry_id IS NULL AND reservation_id IS NULL)
        OR (kind = 'charge' AND amount_cents < 0 AND refund_of_entry_id IS NULL AND reservation_id IS NULL)
        OR (kind = 'capture' AND amount_cents <= 0 AND refund_of_entry_id IS NULL AND reservation_id IS NOT NULL)
        OR (kind = 'refund' AND amount_cents > 0 AND refund_of_entry_id IS NOT NULL AND reservation_id IS NULL)
    )
);
CREATE INDEX entries_by_wallet ON wallet.entries (contractor_id, entry_id DESC);

-- The ledger is append-only: history is corrected by new entries, never rewritten.
CREATE FUNCTION wallet.refuse_ledger_rewrite() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'wallet.entries is append-only (% refused)', TG_OP;
END $$;
CREATE TRIGGER entries_append_only BEFORE UPDATE OR DELETE ON wallet.entries
    FOR EACH ROW EXECUTE FUNCTION wallet.refuse_ledger_rewrite();

CREATE TABLE wallet.reservations (
    reservation_id    uuid        PRIMARY KEY,
    contractor_id     text        NOT NULL REFERENCES wallet.wallets,
    call_id           text        NOT NULL,
    amount_cents      bigint      NOT NULL CHECK (amount_cents > 0),
    expires_at        timestamptz NOT NULL,
    state             text        NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'captured', 'released')),
    captured_cents    bigint,
    capture_entry_id  bigint      UNIQUE REFERENCES wallet.entries,
    created_at        timestamptz NOT NULL DEFAULT now(),
    settled_at        timestamptz,
    UNIQUE (contractor_id, call_id),
    CONSTRAINT captured_has_entry CHECK ((state = 'captured') = (capture_entry_id IS NOT NULL))
);
CREATE INDEX reservations_open ON wallet.reservations (contractor_id, expires_at) WHERE state = 'open';

CREATE TABLE wallet.outbox (
    event_id      bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    topic         text        NOT NULL,
    payload       jsonb       NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    published_at  timestamptz
);
CREATE INDEX outbox_unpublished ON wallet.outbox (topic, event_id) WHERE published_at IS NULL;

-- Writes a locked wallet's balance and settings (as held in w) and re-derives its flags; a flip of the
-- paused flag and a downward crossing of an armed alert become outbox rows in the caller's transaction.
CREATE FUNCTION wallet.apply_balance(w wallet.wallets, new_balance bigint) RETURNS wallet.wallets
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
    RETURN w;
END $$;

-- Routing keeps the threshold at the rate of the contractor's most expensive ZIP, possibly before their
-- first top-up, so this creates an empty wallet when there is none.
CREATE FUNCTION wallet.set_pause_threshold(p_contractor_id text, p_threshold_cents bigint)
RETURNS wallet.wallets LANGUAGE plpgsql AS $$
DECLARE
    w wallet.wallets;
BEGIN
    INSERT INTO wallet.wallets (contractor_id) VALUES (p_contractor_id) ON CONFLICT DO NOTHING;
    SELECT * INTO w FROM wallet.wallets WHERE contractor_id = p_contractor_id FOR UPDATE;
    w.pause_threshold_cents := p_threshold_cents;
    RETURN wallet.apply_balance(w, w.balance_cents);
END $$;

-- A new alert setting starts armed: a balance already below the new threshold gets its one email now.
CREATE FUNCTION wallet.set_low_balance_alert(p_contractor_id text, p_threshold_cents bigint, p_email text)
RETURNS wallet.wallets LANGUAGE plpgsql AS $$
DECLARE
    w wallet.wallets;
BEGIN
    SELECT * INTO w FROM wallet.wallets WHERE contractor_id = p_contractor_id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    w.alert_threshold_cents := p_threshold_cents;
    w.alert_email := p_email;
    w.alert_armed := true;
    RETURN wallet.apply_balance(w, w.balance_cents);
END $$;

CREATE TYPE wallet.post_outcome AS (
    outcome              text,     -- applied, replayed, key_reused, or why nothing was written
    entry_id             bigint,
    contractor_id        text,
    kind                 text,
    amount_cents         bigint,
    balance_after_cents  bigint,
    idempotency_key      text,
    reference            text,
    description          text,
    refund_of_entry_id   bigint,
    reservation_id       uuid,
    created_at           timestamptz,
    detail_cents         bigint    -- for a refusal: the figure that refused it
);

-- Appends one entry (kind top_up, charge, capture or refund; p_amount_cents is always positive) exactly
-- once per idempotency key. Refusals are returned as outcomes, not raised, so one bad request in a
-- group-committed batch does not abort the others.
CREATE FUNCTION wallet.post_entry(
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

CREATE FUNCTION wallet.outcome_of(e wallet.entries, p_request_hash bytea) RETURNS wallet.post_outcome
LANGUAGE sql AS $$
    SELECT ROW(CASE WHEN e.request_hash = p_request_hash THEN 'replayed' ELSE 'key_reused' END,
               e.entry_id, e.contractor_id, e.kind, e.amount_cents, e.balance_after_cents, e.idempotency_key,
               e.reference, e.description, e.refund_of_entry_id, e.reservation_id, e.created_at,
               NULL)::wallet.post_outcome
$$;

-- Holds amount for a call on an unpaused wallet whose available balance covers it. One reservation per
-- (contractor, call): a repeat returns the first. The wallet lock serialises concurrent reserves, so the
-- open holds never exceed the balance.
CREATE FUNCTION wallet.reserve(
    p_contractor_id text, p_call_id text, p_amount_cents bigint, p_expires_in_s integer, p_reservation_id uuid
) RETURNS TABLE (outcome text, reservation_id uuid, amount_cents bigint, expires_at timestamptz, state text,
                 available_cents bigint, balance_cents bigint, pause_threshold_cents bigint)
LANGUAGE plpgsql AS $$
DECLARE
    w wallet.wallets;
    r wallet.reservations;
    held bigint;
BEGIN
    SELECT * INTO w FROM wallet.wallets WHERE contractor_id = p_contractor_id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'no_wallet', NULL::uuid, NULL::bigint, NULL::timestamptz, NULL::text,
                            NULL::bigint, NULL::bigint, NULL::bigint;
        RETURN;
    END IF;
    SELECT coalesce(sum(h.amount_cents), 0) INTO held FROM wallet.reservations h
     WHERE h.contractor_id = p_contractor_id AND h.state = 'open' AND h.expires_at > now();
    SELECT * INTO r FROM wallet.reservations h WHERE h.contractor_id = p_contractor_id AND h.call_id = p_call_id;
    IF FOUND THEN
        RETURN QUERY SELECT CASE WHEN r.amount_cents = p_amount_cents THEN 'replayed' ELSE 'call_reserved' END,
                            r.reservation_id, r.amount_cents, r.expires_at, r.state,
                            w.balance_cents - held, w.balance_cents, w.pause_threshold_cents;
        RETURN;
    END IF;
    IF w.paused OR w.balance_cents - held < p_amount_cents THEN
        RETURN QUERY SELECT CASE WHEN w.paused THEN 'paused' ELSE 'insufficient_available' END,
                            NULL::uuid, NULL::bigint, NULL::timestamptz, NULL::text,
                            w.balance_cents - held, w.balance_cents, w.pause_threshold_cents;
        RETURN;
    END IF;
    INSERT INTO wallet.reservations (reservation_id, contractor_id, call_id, amount_cents, expires_at)
    VALUES (p_reservation_id, p_contractor_id, p_call_id, p_amount_cents,
            now() + make_interval(secs => p_expires_in_s))
    RETURNING * INTO r;
    RETURN QUERY SELECT 'applied', r.reservation_id, r.amount_cents, r.expires_at, r.state,
                        w.balance_cents - held - p_amount_cents, w.balance_cents, w.pause_threshold_cents;
END $$;
