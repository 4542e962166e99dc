-- Where a contractor's sign-in links and account mail go. A table of its own rather than a column of
-- wallet.wallets: the balance functions read and write whole wallet rows, and this address has nothing to do
-- with money.
CREATE TABLE wallet.contacts (
    contractor_id  text        PRIMARY KEY REFERENCES wallet.wallets,
    email          text        NOT NULL,
    updated_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX contacts_by_email ON wallet.contacts (lower(email));
-- The sign-in also finds a contractor by the low-balance alert's address while no contact address is set.
CREATE INDEX wallets_by_alert_email ON wallet.wallets (lower(alert_email)) WHERE alert_email <> '';
-- Spend per day reads a wallet's recent entries by time.
CREATE INDEX entries_by_contractor_time ON wallet.entries (contractor_id, created_at);
