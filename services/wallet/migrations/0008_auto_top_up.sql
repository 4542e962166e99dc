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
