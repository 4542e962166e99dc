-- The billing schema: the effective-dated rate card, one decision per finished call, bookings, charges,
-- refund cases and the outbox. Money moves in the wallet; a row here in state 'settling' is a decision
-- persisted before its wallet call, so a crash at any point is re-driven with the same idempotency keys.

CREATE TABLE billing.zip_rates (
    zip             text        NOT NULL CHECK (zip ~ '^[0-9]{5}$'),
    effective_from  timestamptz NOT NULL,
    rate_cents      bigint      NOT NULL CHECK (rate_cents > 0),
    set_by          text        NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (zip, effective_from)
);

CREATE TABLE billing.booking_fees (
    effective_from  timestamptz PRIMARY KEY,
    fee_cents       bigint      NOT NULL CHECK (fee_cents > 0),
    set_by          text        NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now()
);
-- Policy: "AI agent mode bills per booked appointment: flat $25", until an operator sets another fee.
INSERT INTO billing.booking_fees (effective_from, fee_cents, set_by)
VALUES ('1970-01-01T00:00:00Z', 2500, 'policy default');

CREATE TABLE billing.rated_calls (
    call_id              text        PRIMARY KEY,
    -- sha256 of the FinishedCall as sent: the same call id with other facts is refused, not re-rated.
    facts_hash           bytea       NOT NULL,
    facts                bytea       NOT NULL,
    zip                  text        NOT NULL,
    caller_number        text        NOT NULL,
    started_at           timestamptz NOT NULL,
    billable             boolean     NOT NULL,
    rule                 text        NOT NULL,
    payer_contractor_id  text        NOT NULL DEFAULT '',
    price_cents          bigint      NOT NULL CHECK (price_cents >= 0),
    -- The serialized RatingDecision (without the wallet entry, which arrives at settlement).
    decision             bytea       NOT NULL,
    -- The settlement planned before any wallet call: capture this reservation, else Charge by call id.
    capture_reservation_id text      NOT NULL DEFAULT '',
    state                text        NOT NULL CHECK (state IN ('settling', 'settled')),
    wallet_entry_id      bigint,
    settled_by           text        NOT NULL DEFAULT '' CHECK (settled_by IN ('', 'none', 'capture', 'charge')),
    attempts             integer     NOT NULL DEFAULT 0,
    last_error           text        NOT NULL DEFAULT '',
    decided_at           timestamptz NOT NULL DEFAULT now(),
    settled_at           timestamptz,
    CONSTRAINT settled_billable_has_entry CHECK (
        state = 'settling' OR NOT billable OR wallet_entry_id IS NOT NULL)
);
CREATE INDEX rated_calls_by_zip ON billing.rated_calls (zip, started_at);
CREATE INDEX rated_calls_settling ON billing.rated_calls (decided_at) WHERE state = 'settling';

CREATE TABLE billing.bookings (
    booking_id          text        PRIMARY KEY,
    facts_hash          bytea       NOT NULL,
    call_id             text        NOT NULL,
    contractor_id       text        NOT NULL,
    scheduled_at        timestamptz NOT NULL,
    appointment_at      timestamptz,
    fee_cents           bigint      NOT NULL CHECK (fee_cents > 0),
    fee_effective_from  timestamptz NOT NULL,
    charge_id           text        NOT NULL UNIQUE,
    state               text        NOT NULL CHECK (state IN ('settling', 'settled')),
    wallet_entry_id     bigint,
    attempts            integer     NOT NULL DEFAULT 0,
    last_error          text        NOT NULL DEFAULT '',
    recorded_at         timestamptz NOT NULL DEFAULT now(),
    settled_at          timestamptz,
    CONSTRAINT settled_booking_has_entry CHECK (state = 'settling' OR wallet_entry_id IS NOT NULL)
);
CREATE INDEX bookings_by_call ON billing.bookings (call_id);
CREATE INDEX bookings_by_fee_time ON billing.bookings (scheduled_at);
CREATE INDEX bookings_settling ON billing.bookings (recorded_at) WHERE state = 'settling';

-- One row per settled debit of a wallet (a billable call or a booking).
CREATE TABLE billing.charges (
    charge_id          text        PRIMARY KEY,
    contractor_id      text        NOT NULL,
    kind               text        NOT NULL CHECK (kind IN ('call', 'booking')),
    call_id            text        NOT NULL,
    booking_id         text        NOT NULL DEFAULT '',
    zip                text        NOT NULL DEFAULT '',
    amount_cents       bigint      NOT NULL CHECK (amount_cents > 0),
    wallet_entry_id    bigint      NOT NULL UNIQUE,
    recording_uri      text        NOT NULL DEFAULT '',
    disclosure_played  boolean     NOT NULL DEFAULT false,
    transcript_uri     text        NOT NULL DEFAULT '',
    refunded_cents     bigint      NOT NULL DEFAULT 0,
    charged_at         timestamptz NOT NULL DEFAULT now(),
    -- Policy: "a refund never exceeds the charge".
    CONSTRAINT refund_within_charge CHECK (refunded_cents >= 0 AND refunded_cents <= amount_cents)
);
CREATE INDEX charges_by_contractor ON billing.charges (contractor_id, charged_at DESC, charge_id DESC);
CREATE INDEX charges_by_call ON billing.charges (call_id);

CREATE TABLE billing.refund_cases (
    refund_case_id          text        PRIMARY KEY,
    idempotency_key         text        NOT NULL UNIQUE,
    request_hash            bytea       NOT NULL,
    charge_id               text        NOT NULL REFERENCES billing.charges,
    contractor_id           text        NOT NULL,
    reason                  text        NOT NULL,
    note                    text        NOT NULL DEFAULT '',
    state                   text        NOT NULL CHECK (state IN ('pending_review', 'approved', 'denied',
                                            'rejected_ineligible', 'rejected_not_duplicate',
                                            'rejected_out_of_window')),
    amount_cents            bigint      NOT NULL CHECK (amount_cents >= 0),
    recording_uri           text        NOT NULL DEFAULT '',
    disclosure_played       boolean     NOT NULL DEFAULT false,
    transcript_uri          text        NOT NULL DEFAULT '',
    duplicate_of_charge_id  text        NOT NULL DEFAULT '',
    resolution_note         text        NOT NULL DEFAULT '',
    reviewer                text        NOT NULL DEFAULT '',
    auto_resolved           boolean     NOT NULL DEFAULT false,
    -- An approval is credited after it is recorded: 'settling' until the wallet's REFUND entry is known.
    credit_state            text        NOT NULL DEFAULT 'none' CHECK (credit_state IN ('none', 'settling', 'settled')),
    refund_entry_id         bigint,
    attempts                integer     NOT NULL DEFAULT 0,
    last_error              text        NOT NULL DEFAULT '',
    requested_at            timestamptz NOT NULL DEFAULT now(),
    resolved_at             timestamptz,
    CONSTRAINT approved_is_credited CHECK ((state = 'approved') = (credit_state <> 'none'))
);
-- A charge has at most one case open or approved: it is refunded at most once.
CREATE UNIQUE INDEX one_live_case_per_charge ON billing.refund_cases (charge_id)
    WHERE state IN ('pending_review', 'approved');
CREATE INDEX refund_cases_newest ON billing.refund_cases (requested_at DESC, refund_case_id DESC);
CREATE INDEX refund_cases_settling ON billing.refund_cases (resolved_at) WHERE credit_state = 'settling';

-- Events written with the change that caused them; payload is a serialized BillingEvent without its
-- event_id and occurred_at, which the relay fills from the row.
CREATE TABLE billing.outbox (
    event_id      bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    topic         text        NOT NULL,
    payload       bytea       NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    published_at  timestamptz
);
CREATE INDEX outbox_unpublished ON billing.outbox (topic, event_id) WHERE published_at IS NULL;
