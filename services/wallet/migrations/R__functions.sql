-- The wallet's stored functions: the rules that must run inside PostgreSQL because they decide under the
-- wallet's row lock (the balance, capture-once, the pause flip, settlement). One definition each, here only.
--
-- A repeatable migration (Flyway's R__ convention): `callersync migrate` and every service start apply the
-- numbered migrations first, then this whole file again whenever its text changed, in one transaction. So
-- edit a function here, never in a numbered migration; numbered migrations hold schema changes only.
-- Types and tables a function uses belong to the numbered migrations; a function that changes its
-- signature or return type is dropped first below (CREATE OR REPLACE cannot change those).

-- Databases that applied an earlier text of 0006 have settle_calls returning wallet.settle_result, a type
-- the current text no longer has: that function's return type cannot be replaced in place.
DO $$
BEGIN
    IF to_regtype('wallet.settle_result') IS NOT NULL THEN
        DROP FUNCTION IF EXISTS wallet.settle_calls(text[], text[], bigint[], text[], bytea[], text[], text[],
                                                    uuid[], bytea[]);
        DROP TYPE wallet.settle_result;
    END IF;
END $$;

-- The ledger is append-only: history is corrected by new entries, never rewritten.
CREATE OR REPLACE FUNCTION wallet.refuse_ledger_rewrite() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'wallet.entries is append-only (% refused)', TG_OP;
END $$;

-- Writes locked wallets' balances (each moved by the sum of its deltas) and, for a single wallet's settings
-- change, its new settings (NULL: keep), and re-derives their flags; a flip of the paused flag and a downward
-- crossing of an armed alert become outbox rows in the caller's transaction (per wallet in contractor order,
-- the pause before the alert), and a wallet with auto top-up on is judged for it (wallet.judge_auto_top_up).
-- Every balance change goes through here: a batch's wallets in two statements, because a few statements per
-- wallet cost several times as much per wallet (docs/performance.md, "A batch applies its wallets' balances in
-- one statement"). A batch applies each wallet's total once, which crosses a pause or alert line exactly when
-- item-by-item changes of one sign would; its events carry the batch's final balance.
DROP FUNCTION IF EXISTS wallet.apply_balances(text[], bigint[]);
CREATE OR REPLACE FUNCTION wallet.apply_balances(
    p_contractors text[], p_deltas bigint[], p_pause_cents bigint[] DEFAULT NULL, p_alert_cents bigint[] DEFAULT NULL,
    p_alert_emails text[] DEFAULT NULL, p_armed boolean[] DEFAULT NULL
) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    judged text[];
    judged_balances bigint[];
    judged_pauses bigint[];
BEGIN
    WITH moved AS (
        UPDATE wallet.wallets w
           SET balance_cents = t.new_balance, pause_threshold_cents = t.pause_cents,
               paused = t.new_balance < t.pause_cents, alert_threshold_cents = t.alert_cents,
               alert_email = t.alert_email, alert_armed = NOT (t.alert_cents > 0 AND t.new_balance < t.alert_cents),
               updated_at = now()
          FROM (SELECT x.contractor_id, x.balance_cents + d.delta AS new_balance,
                       coalesce(d.pause_cents, x.pause_threshold_cents) AS pause_cents,
                       coalesce(d.alert_cents, x.alert_threshold_cents) AS alert_cents,
                       coalesce(d.alert_email, x.alert_email) AS alert_email,
                       x.paused AS was_paused, coalesce(d.armed, x.alert_armed) AS was_armed
                  FROM (SELECT d.c, sum(d.delta)::bigint AS delta, (array_agg(d.pause_cents))[1] AS pause_cents,
                               (array_agg(d.alert_cents))[1] AS alert_cents,
                               (array_agg(d.alert_email))[1] AS alert_email, (array_agg(d.armed))[1] AS armed
                          FROM unnest(p_contractors, p_deltas, p_pause_cents, p_alert_cents, p_alert_emails, p_armed)
                               AS d(c, delta, pause_cents, alert_cents, alert_email, armed)
                         GROUP BY d.c) d
                  JOIN wallet.wallets x ON x.contractor_id = d.c) t
         WHERE w.contractor_id = t.contractor_id
        RETURNING w.*, t.was_paused, t.was_armed
    ), outbox AS (
        INSERT INTO wallet.outbox (topic, payload)
        SELECT x.topic, x.payload FROM (
            SELECT m.contractor_id, 0 AS rank, 'wallet.pause_changed' AS topic, jsonb_build_object(
                       'contractor_id', m.contractor_id, 'paused', m.paused, 'balance_cents', m.balance_cents,
                       'pause_threshold_cents', m.pause_threshold_cents) AS payload
              FROM moved m WHERE m.paused IS DISTINCT FROM m.was_paused
            UNION ALL
            SELECT m.contractor_id, 1, 'wallet.low_balance_email', jsonb_build_object(
                       'contractor_id', m.contractor_id, 'email', m.alert_email, 'balance_cents', m.balance_cents,
                       'alert_threshold_cents', m.alert_threshold_cents)
              FROM moved m WHERE NOT m.alert_armed AND m.was_armed AND m.alert_email <> '') x
         ORDER BY x.contractor_id, x.rank
    )
    SELECT coalesce(array_agg(m.contractor_id ORDER BY m.contractor_id), '{}'),
           coalesce(array_agg(m.balance_cents ORDER BY m.contractor_id), '{}'),
           coalesce(array_agg(m.pause_threshold_cents ORDER BY m.contractor_id), '{}')
      INTO judged, judged_balances, judged_pauses
      FROM moved m WHERE m.auto_top_up_threshold_cents > 0;
    PERFORM wallet.judge_auto_top_up(j.c, j.balance, j.pause)
       FROM unnest(judged, judged_balances, judged_pauses) WITH ORDINALITY AS j(c, balance, pause, ord)
      ORDER BY j.ord;
END $$;

-- One locked wallet: its balance set to new_balance and its settings to those held in w.
CREATE OR REPLACE FUNCTION wallet.apply_balance(w wallet.wallets, new_balance bigint) RETURNS wallet.wallets
LANGUAGE plpgsql AS $$
DECLARE
    now_at wallet.wallets;
BEGIN
    SELECT * INTO now_at FROM wallet.wallets x WHERE x.contractor_id = w.contractor_id;
    PERFORM wallet.apply_balances(ARRAY[w.contractor_id], ARRAY[new_balance - now_at.balance_cents],
                                  ARRAY[w.pause_threshold_cents], ARRAY[w.alert_threshold_cents],
                                  ARRAY[w.alert_email], ARRAY[w.alert_armed]);
    SELECT * INTO w FROM wallet.wallets x WHERE x.contractor_id = w.contractor_id;
    RETURN w;
END $$;

-- Routing keeps the threshold at the rate of the contractor's most expensive ZIP, possibly before their
-- first top-up, so this creates an empty wallet when there is none.
CREATE OR REPLACE FUNCTION wallet.set_pause_threshold(p_contractor_id text, p_threshold_cents bigint)
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
CREATE OR REPLACE FUNCTION wallet.set_low_balance_alert(p_contractor_id text, p_threshold_cents bigint, p_email text)
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

CREATE OR REPLACE FUNCTION wallet.outcome_of(e wallet.entries, p_request_hash bytea) RETURNS wallet.post_outcome
LANGUAGE sql AS $$
    SELECT ROW(CASE WHEN e.request_hash = p_request_hash THEN 'replayed' ELSE 'key_reused' END,
               e.entry_id, e.contractor_id, e.kind, e.amount_cents, e.balance_after_cents, e.idempotency_key,
               e.reference, e.description, e.refund_of_entry_id, e.reservation_id, e.created_at,
               NULL)::wallet.post_outcome
$$;

-- Concurrent identical requests: the one that waited for the wallet lock replays the winner's entry. A TOP_UP
-- written here is an operator's manual credit (the card path is wallet.credit_payment), and its payment
-- reference is credited once ('reference_used' names the entry that has it).
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
        -- Refused before the wallet is created, so a refusal writes nothing. A reference committed between
        -- this check and the insert below is caught by entries_payment_reference (the ON CONFLICT answer).
        SELECT * INTO e FROM wallet.entries
         WHERE kind = 'top_up' AND reference = p_reference AND credit_source IN ('card', 'operator');
        IF FOUND THEN
            RETURN ROW('reference_used', e.entry_id, p_contractor_id, p_kind, NULL, NULL, p_idempotency_key,
                       p_reference, NULL, NULL, NULL, NULL, NULL)::wallet.post_outcome;
        END IF;
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

-- A group-committed batch of postings (services/wallet/storage.py). Its usual items, plain charges on
-- existing wallets under keys never used (in the ledger or twice in the batch), are written in a few
-- set-based statements: one insert for all of their entries and one wallet.apply_balances for their wallets.
-- Every other item (a replay, a refused key, a capture, a refund, no wallet) goes through wallet.post_entry,
-- which answers it. Every wallet of the batch is locked first, in contractor order like every path that
-- locks several; a batch with a manual top-up (which may create its wallet) goes item by item, as inserting
-- a new wallet while holding others' locks could deadlock against another batch. A key another wallet took
-- meanwhile (unique violation) rolls the set-based part back and every item goes the per-item way.
CREATE OR REPLACE FUNCTION wallet.post_entries(
    p_contractors text[], p_kinds text[], p_amounts bigint[], p_keys text[], p_hashes bytea[], p_refs text[],
    p_descs text[], p_refund_ofs bigint[], p_rids uuid[]
) RETURNS SETOF wallet.post_outcome  -- one per item, in their order
LANGUAGE plpgsql AS $$
DECLARE
    written wallet.entries[] := '{}';
BEGIN
    IF 'top_up' <> ALL (p_kinds) THEN
        PERFORM 1 FROM wallet.wallets w WHERE w.contractor_id = ANY (p_contractors)
         ORDER BY w.contractor_id FOR UPDATE;
        BEGIN
            WITH e AS (
                INSERT INTO wallet.entries (contractor_id, kind, amount_cents, balance_after_cents,
                                            idempotency_key, request_hash, reference, description)
                SELECT o.c, 'charge', -o.a, w.balance_cents - sum(o.a) OVER (PARTITION BY o.c ORDER BY o.ord),
                       o.key, o.h, coalesce(o.ref, ''), coalesce(o.d, '')
                  FROM (SELECT o.*, count(*) OVER (PARTITION BY o.key) AS keys_like
                          FROM unnest(p_contractors, p_kinds, p_amounts, p_keys, p_hashes, p_refs, p_descs)
                               WITH ORDINALITY AS o(c, k, a, key, h, ref, d, ord)) o
                  JOIN wallet.wallets w ON w.contractor_id = o.c
                 WHERE o.k = 'charge' AND o.keys_like = 1
                   AND NOT EXISTS (SELECT 1 FROM wallet.entries x WHERE x.idempotency_key = o.key)
                 ORDER BY o.ord
                RETURNING *
            )
            SELECT coalesce(array_agg(e), '{}') INTO written FROM e;
            PERFORM wallet.apply_balances(ARRAY(SELECT e.contractor_id FROM unnest(written) e),
                                          ARRAY(SELECT e.amount_cents FROM unnest(written) e));
        EXCEPTION WHEN unique_violation THEN
            written := '{}';
        END;
    END IF;
    -- Answers by key (unique in the set-based part), so their order never rests on the entry ids'.
    RETURN QUERY
        SELECT (x.o).* FROM (
            SELECT ROW('applied', e.entry_id, e.contractor_id, e.kind, e.amount_cents, e.balance_after_cents,
                       e.idempotency_key, e.reference, e.description, e.refund_of_entry_id, e.reservation_id,
                       e.created_at, NULL)::wallet.post_outcome AS o, k.ord
              FROM unnest(p_keys) WITH ORDINALITY AS k(key, ord)
              JOIN unnest(written) e ON e.idempotency_key = k.key
            UNION ALL
            SELECT ROW(r.*)::wallet.post_outcome, op.ord
              FROM unnest(p_contractors, p_kinds, p_amounts, p_keys, p_hashes, p_refs, p_descs, p_refund_ofs,
                          p_rids) WITH ORDINALITY AS op(c, k, a, key, h, ref, d, rof, rid, ord)
             CROSS JOIN LATERAL wallet.post_entry(op.c, op.k, op.a, op.key, op.h, op.ref, op.d, op.rof, op.rid) r
             WHERE op.key <> ALL (ARRAY(SELECT e.idempotency_key FROM unnest(written) e))) x
        ORDER BY x.ord;
END $$;

-- Holds amount for a call on an unpaused wallet whose available balance covers it, one per (contractor, call).
-- A new hold is judged for auto top-up too: holds lower the available balance.
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
    -- A hold moves no money: its commit need not wait for the WAL flush (migration 0003 says why).
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

-- One finished call settled in one statement: capture the payer's hold at the rated price (or charge when
-- there is none) and release every other hold of the call, so a call costs one round trip, not three.
--
-- The keys are Capture's and Charge's own (`capture:<reservation id>` with Capture's request hash, else the
-- item's charge key with Charge's), so a re-send, or a call settled partly by the single RPCs, replays the
-- entry instead of moving money twice. The payer's wallet is locked first, so every decision about which
-- key applies is taken under the lock that serialises that wallet's postings. The usual case (an open hold,
-- or no hold and an unused key) is written here directly, in about half the statements post_entry's
-- general path takes; anything unusual (a key taken meanwhile by another wallet) goes through post_entry.
CREATE OR REPLACE FUNCTION wallet.settle_call(
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

-- A batch of finished calls settles its common cases in a few set-based statements instead of one
-- wallet.settle_call per item (each item's hold update, ledger insert and balance update started one at a
-- time cost most of a batch's time; docs/performance.md has the figures).
--
-- The common cases, decided under the payers' wallet locks: a free call (release its open holds); a payer
-- with a wallet, no entry under the item's charge key, and either their open hold on the call as named
-- (capture it) or no hold on the call at all (charge). Everything else (a replay, a hold captured or
-- released before, a key used before, a call or key twice in the batch) goes through wallet.settle_call,
-- which answers those. The entries are the same rows settle_call writes (same keys, hashes, references,
-- running balance per wallet); each payer's balance is applied once with the batch's total, which crosses a
-- pause or alert threshold exactly when the item-by-item debits would. A key another wallet took meanwhile
-- (unique violation) rolls the set-based part back and every item goes the per-item way. Each step is its
-- own statement over arrays, joined through indexes or a jsonb map: a join of one WITH query's rows against
-- another's is planned as a nested loop (the planner guesses one row for each).
CREATE OR REPLACE FUNCTION wallet.settle_calls(
    p_call_ids text[], p_payers text[], p_amounts bigint[], p_keys text[], p_hashes bytea[], p_refs text[],
    p_descs text[], p_rids uuid[], p_capture_hashes bytea[]
) RETURNS SETOF wallet.post_outcome  -- one per item, in their order
LANGUAGE plpgsql AS $$
DECLARE
    items wallet.settle_item[];
    written wallet.entries[];
    position_of jsonb;  -- entry key -> its index in written
    settled wallet.post_outcome[] := '{}';
    settled_ords bigint[] := '{}';
BEGIN
    -- In contractor order, as every other path that locks several wallets.
    PERFORM 1 FROM wallet.wallets w WHERE w.contractor_id = ANY (p_payers) ORDER BY w.contractor_id FOR UPDATE;
    BEGIN
        SELECT coalesce(array_agg(ROW(
                   o.ord, o.call, o.payer, o.kind, o.a, o.balance_after,
                   CASE o.kind WHEN 'capture' THEN 'capture:' || o.hold_id ELSE o.key END,
                   CASE o.kind WHEN 'capture' THEN o.ch ELSE o.h END,
                   CASE o.kind WHEN 'capture' THEN o.hold_id::text ELSE coalesce(o.ref, '') END,
                   coalesce(o.d, ''), o.hold_id)::wallet.settle_item ORDER BY o.ord), '{}')
          INTO items
          FROM (SELECT o.*, (o.balance - sum(o.a) OVER (PARTITION BY o.payer ORDER BY o.ord))::bigint AS balance_after
          FROM (SELECT o.*, w.balance_cents AS balance, hold.reservation_id AS hold_id,
                       CASE WHEN o.payer = '' THEN NULL WHEN hold.reservation_id IS NULL THEN 'charge'
                            ELSE 'capture' END AS kind
                  FROM (SELECT o.*, count(*) OVER (PARTITION BY o.call) AS calls_like,
                               count(*) OVER (PARTITION BY CASE WHEN o.payer <> '' THEN o.key END) AS keys_like
                          FROM unnest(p_call_ids, p_payers, p_amounts, p_keys, p_hashes, p_refs, p_descs, p_rids,
                                      p_capture_hashes)
                               WITH ORDINALITY AS o(call, payer, a, key, h, ref, d, rid, ch, ord)) o
                  LEFT JOIN wallet.wallets w ON w.contractor_id = o.payer
                  LEFT JOIN wallet.reservations hold ON hold.contractor_id = o.payer AND hold.call_id = o.call
                 WHERE o.calls_like = 1
                   AND (o.payer = ''
                        OR (o.keys_like = 1 AND w.contractor_id IS NOT NULL
                            AND NOT EXISTS (SELECT 1 FROM wallet.entries e WHERE e.idempotency_key = o.key)
                            AND (hold.reservation_id IS NULL
                                 OR (hold.state = 'open' AND hold.reservation_id = o.rid))))) o) o;

        WITH e AS (
            INSERT INTO wallet.entries (contractor_id, kind, amount_cents, balance_after_cents, idempotency_key,
                                        request_hash, reference, description, reservation_id)
            SELECT i.payer, i.kind, -i.amount_cents, i.balance_after, i.entry_key, i.request_hash, i.reference,
                   i.description, i.hold_id
              FROM unnest(items) i
             WHERE i.kind IS NOT NULL
             ORDER BY i.ord
            RETURNING *
        )
        SELECT coalesce(array_agg(e), '{}') INTO written FROM e;
        SELECT coalesce(jsonb_object_agg((written[k]).idempotency_key, k), '{}') INTO position_of
          FROM generate_subscripts(written, 1) k;

        UPDATE wallet.reservations h
           SET state = 'captured', settled_at = now(),
               capture_entry_id = (written[(position_of ->> ('capture:' || h.reservation_id))::int]).entry_id,
               captured_cents = -(written[(position_of ->> ('capture:' || h.reservation_id))::int]).amount_cents
         WHERE h.reservation_id = ANY (ARRAY(SELECT i.hold_id FROM unnest(items) i WHERE i.kind = 'capture'))
           AND h.state = 'open';
        UPDATE wallet.reservations h
           SET state = 'released', settled_at = now()
         WHERE h.call_id = ANY (ARRAY(SELECT i.call_id FROM unnest(items) i)) AND h.state = 'open';

        SELECT coalesce(array_agg(CASE WHEN i.kind IS NULL
                   THEN ROW('applied', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
                            NULL)::wallet.post_outcome
                   ELSE ROW('applied', (e).entry_id, (e).contractor_id, (e).kind, (e).amount_cents,
                            (e).balance_after_cents, (e).idempotency_key, (e).reference, (e).description,
                            (e).refund_of_entry_id, (e).reservation_id, (e).created_at, NULL)::wallet.post_outcome
                   END ORDER BY i.ord), '{}'),
               coalesce(array_agg(i.ord ORDER BY i.ord), '{}')
          INTO settled, settled_ords
          FROM (SELECT i.*, written[(position_of ->> i.entry_key)::int] AS e FROM unnest(items) i) i;

        PERFORM wallet.apply_balances(ARRAY(SELECT e.contractor_id FROM unnest(written) e),
                                      ARRAY(SELECT e.amount_cents FROM unnest(written) e));
    EXCEPTION WHEN unique_violation THEN
        settled := '{}';
        settled_ords := '{}';
    END;
    IF cardinality(settled) = cardinality(p_call_ids) THEN  -- the usual batch: nothing left for the per-item path
        RETURN QUERY SELECT * FROM unnest(settled);
        RETURN;
    END IF;
    RETURN QUERY
        SELECT (x.o).* FROM (
            SELECT settled[k] AS o, settled_ords[k] AS ord FROM generate_subscripts(settled, 1) k
            UNION ALL
            SELECT ROW(r.*)::wallet.post_outcome, op.ord
              FROM unnest(p_call_ids, p_payers, p_amounts, p_keys, p_hashes, p_refs, p_descs, p_rids,
                          p_capture_hashes) WITH ORDINALITY AS op(call, payer, a, key, h, ref, d, rid, ch, ord)
             CROSS JOIN LATERAL wallet.settle_call(op.call, op.payer, op.a, op.key, op.h, op.ref, op.d, op.rid,
                                                   op.ch) r
             WHERE op.ord <> ALL (settled_ords)) x
        ORDER BY x.ord;
END $$;

-- The verified path: credits a top-up by the amount the provider received for its PaymentIntent, once.
-- The caller has checked the PaymentIntent with the provider (succeeded, this contractor, this currency,
-- this top-up). A receipt email goes in the outbox with the credit.
CREATE OR REPLACE FUNCTION wallet.credit_payment(
    p_top_up_id uuid, p_payment_intent_id text, p_received_cents bigint, p_card_brand text, p_card_last4 text
) RETURNS TABLE (outcome text, entry_id bigint, balance_after_cents bigint)
LANGUAGE plpgsql AS $$
DECLARE
    t wallet.top_ups;
    w wallet.wallets;
    e wallet.entries;
    receipt_to text;
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
    -- Every successful top-up gets a receipt: one started without an address (an API client's) goes to the
    -- contractor's contact address.
    receipt_to := t.email;
    IF receipt_to = '' THEN
        SELECT c.email INTO receipt_to FROM wallet.contacts c WHERE c.contractor_id = t.contractor_id;
        receipt_to := coalesce(receipt_to, '');
    END IF;
    IF receipt_to <> '' THEN
        INSERT INTO wallet.outbox (topic, payload) VALUES ('wallet.payment_email', jsonb_build_object(
            'kind', 'receipt', 'contractor_id', t.contractor_id, 'email', receipt_to, 'top_up_id', t.top_up_id,
            'origin', t.origin, 'amount_cents', p_received_cents, 'card_brand', p_card_brand,
            'card_last4', p_card_last4, 'balance_cents', e.balance_after_cents));
    END IF;
    RETURN QUERY SELECT 'credited', e.entry_id, e.balance_after_cents;
END $$;

-- Called with the wallet row locked, after a balance change or a new hold. The crossing is judged on the
-- available balance (balance minus open holds) against the higher of the contractor's threshold and the
-- pause line, so a top-up never starts only after the pause. Fires once per fall (the armed flag), at most
-- one in flight (top_ups_one_auto_in_flight), never past the daily maximum; the runaway breaker turns auto
-- top-up off when another would exceed max_per_hour within an hour.
CREATE OR REPLACE FUNCTION wallet.judge_auto_top_up(p_contractor_id text, p_balance_cents bigint, p_pause_cents bigint)
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
CREATE OR REPLACE FUNCTION wallet.disable_auto_top_up(p_contractor_id text, p_kind text, p_detail text)
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

-- SetAutoTopUp: settings and consent, then a judgement now (a balance already below the new threshold
-- starts one at once, as a new low-balance alert emails at once).
CREATE OR REPLACE FUNCTION wallet.set_auto_top_up(
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
