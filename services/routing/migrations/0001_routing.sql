-- Routing's own data: ZIP claims, contractors' routing profiles, its projection of billing's rate card,
-- the caller blocklist, the routing-step record, the consumed-event ledger and the pause-threshold outbox.

-- Billing's rate card as routing heard it from callersync.billing.events (or GetRateCard): versions, so a
-- rate set for a later moment takes over by itself.
CREATE TABLE routing.zip_rates (
    zip            text        NOT NULL CHECK (zip ~ '^[0-9]{5}$'),
    effective_from timestamptz NOT NULL,
    rate_cents     bigint      NOT NULL CHECK (rate_cents > 0),
    heard_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (zip, effective_from)
);

CREATE TABLE routing.booking_fees (
    effective_from timestamptz PRIMARY KEY,
    fee_cents      bigint      NOT NULL CHECK (fee_cents > 0),
    heard_at       timestamptz NOT NULL DEFAULT now()
);

-- Mode, schedule and caps. A contractor without a row is HUMAN, rung at any hour, with no caps of their own.
CREATE TABLE routing.profiles (
    contractor_id               text        PRIMARY KEY,
    mode                        text        NOT NULL DEFAULT 'human' CHECK (mode IN ('human', 'ai_agent')),
    time_zone                   text        NOT NULL DEFAULT 'UTC',
    -- [[weekday 1-7, start_minute, end_minute], ...]; empty means any hour.
    weekly_hours                jsonb       NOT NULL DEFAULT '[]',
    daily_max_connected_calls   integer     NOT NULL DEFAULT 0 CHECK (daily_max_connected_calls >= 0),
    monthly_max_connected_calls integer     NOT NULL DEFAULT 0 CHECK (monthly_max_connected_calls >= 0),
    max_concurrent_calls        integer     NOT NULL DEFAULT 0 CHECK (max_concurrent_calls >= 0),
    -- As last computed for the wallet (the threshold relay pushes it).
    pause_threshold_cents       bigint      NOT NULL DEFAULT 0,
    updated_at                  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE routing.claims (
    zip           text        NOT NULL CHECK (zip ~ '^[0-9]{5}$'),
    contractor_id text        NOT NULL,
    position      text        NOT NULL CHECK (position IN ('primary', 'backup')),
    -- 0 for the primary, 1.. for backups in cascade order.
    backup_rank   integer     NOT NULL CHECK ((position = 'primary') = (backup_rank = 0) AND backup_rank >= 0),
    claimed_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (zip, contractor_id),
    -- One primary and one backup per rank; deferred, so a re-ranking transaction may pass through duplicates.
    CONSTRAINT one_claim_per_slot UNIQUE (zip, backup_rank) DEFERRABLE INITIALLY DEFERRED
);
CREATE INDEX claims_by_contractor ON routing.claims (contractor_id, zip);

-- "Recompute and push this contractor's pause threshold to the wallet", written in the transaction that
-- changed its inputs; not_before delays it to the moment a scheduled rate takes over.
CREATE TABLE routing.threshold_outbox (
    event_id      bigserial   PRIMARY KEY,
    contractor_id text        NOT NULL,
    not_before    timestamptz NOT NULL DEFAULT now(),
    cause         text        NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    published_at  timestamptz
);
CREATE INDEX threshold_outbox_due ON routing.threshold_outbox (not_before) WHERE published_at IS NULL;
CREATE INDEX threshold_outbox_contractor ON routing.threshold_outbox (contractor_id) WHERE published_at IS NULL;

CREATE TABLE routing.blocked_callers (
    caller_number  text        PRIMARY KEY CHECK (caller_number ~ '^\+[1-9][0-9]{6,14}$'),
    source         text        NOT NULL CHECK (source IN ('operator', 'spam_refund')),
    blocked_by     text        NOT NULL,
    note           text        NOT NULL DEFAULT '',
    refund_case_id text        NOT NULL DEFAULT '',
    blocked_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX blocked_callers_newest ON routing.blocked_callers (blocked_at DESC, caller_number DESC);

-- Who blocked and unblocked whom, for the next operator (the blocklist itself only holds the present).
CREATE TABLE routing.blocklist_history (
    history_id    bigserial   PRIMARY KEY,
    caller_number text        NOT NULL,
    action        text        NOT NULL CHECK (action IN ('block', 'unblock')),
    actor         text        NOT NULL,
    note          text        NOT NULL DEFAULT '',
    at            timestamptz NOT NULL DEFAULT now()
);

-- Every routing step: the offer, each skip with its reason, each ring that was not taken.
CREATE TABLE routing.steps (
    step_id       bigserial   PRIMARY KEY,
    call_id       text        NOT NULL,
    step          integer     NOT NULL,
    contractor_id text        NOT NULL,
    kind          text        NOT NULL CHECK (kind IN ('offered', 'skipped', 'not_taken')),
    zip           text        NOT NULL,
    position      text        NOT NULL,
    backup_rank   integer     NOT NULL,
    skip_reason   text        NOT NULL DEFAULT '',
    ring_outcome  text        NOT NULL DEFAULT '',
    message       text        NOT NULL DEFAULT '',
    rate_cents    bigint      NOT NULL,
    at            timestamptz NOT NULL,
    -- Steps arrive through a Redis stream at least once: this key makes a redelivery a no-op.
    UNIQUE (call_id, step, contractor_id, kind)
);
CREATE INDEX steps_missed ON routing.steps (contractor_id, at DESC, step_id DESC) WHERE kind <> 'offered';

-- Connected calls from billing's CallRated events, counted against caps.
CREATE TABLE routing.connected_calls (
    call_id       text        PRIMARY KEY,
    contractor_id text        NOT NULL,
    started_at    timestamptz NOT NULL
);
CREATE INDEX connected_calls_by_contractor ON routing.connected_calls (contractor_id, started_at);

-- Billing events already applied: the at-least-once stream becomes exactly-once application.
CREATE TABLE routing.consumed_events (
    stream     text        NOT NULL,
    event_id   bigint      NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (stream, event_id)
);

-- Stream entries that could not be understood: kept for the on-call engineer, not retried forever.
CREATE TABLE routing.rejected_events (
    rejected_id bigserial   PRIMARY KEY,
    stream      text        NOT NULL,
    entry_id    text        NOT NULL,
    fields      jsonb       NOT NULL,
    error       text        NOT NULL,
    at          timestamptz NOT NULL DEFAULT now()
);
