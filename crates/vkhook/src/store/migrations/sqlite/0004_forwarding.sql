-- Forwarding (issue 13): an administrator's endpoints, one delivery per (endpoint, event) made in the commit that
-- stores the event, and every attempt. Times are Unix milliseconds.

CREATE TABLE endpoints (
    id                     TEXT PRIMARY KEY,        -- ep_ and random: also the vault row of its secrets
    group_id               INTEGER NOT NULL REFERENCES communities(id) ON DELETE CASCADE,
    name                   TEXT NOT NULL,
    url                    TEXT NOT NULL,
    event_types            TEXT NOT NULL DEFAULT '',  -- comma-separated; empty: every type
    secret                 TEXT NOT NULL,           -- vault (whsec_…)
    previous_secret        TEXT,                    -- vault: also signs until previous_secret_until
    previous_secret_until  INTEGER,
    enabled                BOOLEAN NOT NULL DEFAULT 1,
    disabled_reason        TEXT,                    -- admin | gone | failing
    failing_since          INTEGER,                 -- the first failure since the last success
    lease_owner            TEXT,                    -- the instance sending to it now
    lease_until            INTEGER NOT NULL DEFAULT 0,
    created_by             INTEGER NOT NULL,
    created_at             INTEGER NOT NULL,
    updated_at             INTEGER NOT NULL
);
CREATE INDEX endpoints_group ON endpoints(group_id);

CREATE TABLE deliveries (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    endpoint_id      TEXT NOT NULL REFERENCES endpoints(id) ON DELETE CASCADE,
    group_id         INTEGER NOT NULL,
    inbox_id         INTEGER,                       -- the stored event; NULL for a test event
    event_id         TEXT NOT NULL,
    event_type       TEXT NOT NULL,
    payload          TEXT,                          -- a test event's body (others: the inbox's)
    status           TEXT NOT NULL DEFAULT 'pending',  -- pending | sending | delivered | failed
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  INTEGER NOT NULL,
    lease_owner      TEXT,
    lease_until      INTEGER,
    created_at       INTEGER NOT NULL,
    finished_at      INTEGER,
    UNIQUE (endpoint_id, inbox_id)
);
-- Unfinished deliveries of an endpoint, soonest first: what a claim walks.
CREATE INDEX deliveries_open ON deliveries(endpoint_id, next_attempt_at) WHERE status IN ('pending', 'sending');

CREATE TABLE delivery_attempts (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    delivery_id  INTEGER NOT NULL REFERENCES deliveries(id) ON DELETE CASCADE,
    endpoint_id  TEXT NOT NULL,
    attempt      INTEGER NOT NULL,
    at           INTEGER NOT NULL,
    status_code  INTEGER,                           -- the HTTP status; NULL when none came
    error        TEXT,                              -- why it failed, in words
    duration_ms  INTEGER NOT NULL,
    response     TEXT                               -- the first bytes of the answer
);
CREATE INDEX delivery_attempts_endpoint ON delivery_attempts(endpoint_id, id);
CREATE INDEX delivery_attempts_delivery ON delivery_attempts(delivery_id);

-- Ingest decides what forwarding needs in the statement that stores the event (so in the same commit, before VK
-- hears `ok`): one delivery per enabled endpoint that wants its type. VK's retries insert nothing, so they make no
-- delivery either.
CREATE TRIGGER inbox_forward AFTER INSERT ON inbox_events
BEGIN
    INSERT INTO deliveries (endpoint_id, group_id, inbox_id, event_id, event_type, next_attempt_at, created_at)
    SELECT id, NEW.group_id, NEW.id, NEW.event_id, NEW.event_type, NEW.received_at, NEW.received_at
      FROM endpoints
     WHERE group_id = NEW.group_id AND enabled
       AND (event_types = '' OR instr(',' || event_types || ',', ',' || NEW.event_type || ',') > 0);
END;
-- Given-up deliveries of an endpoint: «Повторить неудачные» and the card's count (few rows, so a small index).
CREATE INDEX deliveries_failed ON deliveries(endpoint_id) WHERE status = 'failed';

-- Alerts: what the admin who connected a community is told (a dead key, an endpoint disabled, VK's status failed),
-- once when it starts and at most daily while it lasts. One open alert per (community, kind, subject).
ALTER TABLE community_settings ADD COLUMN alert_email TEXT;  -- where alert e-mails go (the admin's choice)
CREATE TABLE alerts (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    group_id      INTEGER NOT NULL REFERENCES communities(id) ON DELETE CASCADE,
    kind          TEXT NOT NULL,                    -- bot_paused | endpoint_disabled | vk_failed
    subject       TEXT NOT NULL DEFAULT '',         -- the endpoint's id, for endpoint_disabled
    detail        TEXT NOT NULL DEFAULT '',         -- words for the message (an endpoint's name and why)
    started_at    INTEGER NOT NULL,
    resolved_at   INTEGER,
    sends         INTEGER NOT NULL DEFAULT 0,          -- how many times the admin was told
    last_sent_at  INTEGER NOT NULL DEFAULT 0,
    vk_result     TEXT,                             -- sent | not_allowed | no_key | failed
    email_result  TEXT                              -- sent | failed | not_configured | no_address
);
CREATE UNIQUE INDEX alerts_open ON alerts(group_id, kind, subject) WHERE resolved_at IS NULL;
CREATE INDEX alerts_group ON alerts(group_id, id);

-- «Проверить путь»: the last synthetic event sent through the public URL, and what came of it.
ALTER TABLE community_settings ADD COLUMN path_check_at INTEGER;
ALTER TABLE community_settings ADD COLUMN path_check_outcome TEXT;  -- arrived | unreachable | tls | redirect | answered | timeout
ALTER TABLE community_settings ADD COLUMN path_check_detail TEXT;   -- milliseconds, or what came back instead of ok
