-- One tenant cannot hurt another (issue 22).

-- Fair forwarding: endpoints are claimed round-robin by their last claim, and an endpoint that failed (a timeout,
-- 5xx) waits until `backoff_until` with all its deliveries, new ones too.
ALTER TABLE endpoints ADD COLUMN last_claimed_at INTEGER NOT NULL DEFAULT 0;
ALTER TABLE endpoints ADD COLUMN backoff_until INTEGER NOT NULL DEFAULT 0;
-- The `whsec_` secret is shown once, after creation and after a rotation; then masked.
ALTER TABLE endpoints ADD COLUMN reveal_pending BOOLEAN NOT NULL DEFAULT 0;

-- Alert e-mail addresses are confirmed by a link before anything else is sent to them.
ALTER TABLE community_settings ADD COLUMN alert_email_pending TEXT;      -- the address waiting for its confirmation
ALTER TABLE community_settings ADD COLUMN alert_email_token TEXT;        -- SHA-256 of the confirmation link's token
ALTER TABLE community_settings ADD COLUMN alert_email_sent_at INTEGER;   -- when the confirmation went out
-- Addresses given before were never confirmed: they wait for a confirmation like a new one (nothing is sent to them
-- until then).
UPDATE community_settings SET alert_email_pending = alert_email, alert_email = NULL WHERE alert_email IS NOT NULL;

-- Every telling of an alert (a VK message and/or an e-mail), for the daily limits that resolving does not reset.
CREATE TABLE alert_tellings (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    alert_id  INTEGER NOT NULL,
    group_id  INTEGER NOT NULL,
    kind      TEXT NOT NULL,
    user_id   INTEGER,                                 -- the admin told in VK
    email     TEXT,                                    -- the address told
    at        INTEGER NOT NULL
);
CREATE INDEX alert_tellings_group ON alert_tellings(group_id, kind, at);
CREATE INDEX alert_tellings_user ON alert_tellings(user_id, at);
CREATE INDEX alert_tellings_email ON alert_tellings(email, at);
