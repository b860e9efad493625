-- Forwarding (issue 13): an administrator's endpoints, one delivery per (endpoint, event) made in the commit that
-- stores the event, and every attempt. Times are Unix milliseconds.

CREATE TABLE endpoints (
    id                     TEXT PRIMARY KEY,        -- ep_ and random: also the vault row of its secrets
    group_id               BIGINT NOT NULL REFERENCES communities(id) ON DELETE CASCADE,
    name                   TEXT NOT NULL,
    url                    TEXT NOT NULL,
    event_types            TEXT NOT NULL DEFAULT '',  -- comma-separated; empty: every type
    secret                 TEXT NOT NULL,           -- vault (whsec_…)
    previous_secret        TEXT,                    -- vault: also signs until previous_secret_until
    previous_secret_until  BIGINT,
    enabled                BOOLEAN NOT NULL DEFAULT TRUE,
    disabled_reason        TEXT,                    -- admin | gone | failing
    failing_since          BIGINT,                  -- the first failure since the last success
    lease_owner            TEXT,                    -- the instance sending to it now
    lease_until            BIGINT NOT NULL DEFAULT 0,
    created_by             BIGINT NOT NULL,
    created_at             BIGINT NOT NULL,
    updated_at             BIGINT NOT NULL
);
CREATE INDEX endpoints_group ON endpoints(group_id);

CREATE TABLE deliveries (
    id               BIGSERIAL PRIMARY KEY,
    endpoint_id      TEXT NOT NULL REFERENCES endpoints(id) ON DELETE CASCADE,
    group_id         BIGINT NOT NULL,
    inbox_id         BIGINT,                        -- the stored event; NULL for a test event
    event_id         TEXT NOT NULL,
    event_type       TEXT NOT NULL,
    payload          TEXT,                          -- a test event's body (others: the inbox's)
    status           TEXT NOT NULL DEFAULT 'pending',  -- pending | sending | delivered | failed
    attempts         BIGINT NOT NULL DEFAULT 0,
    next_attempt_at  BIGINT NOT NULL,
    lease_owner      TEXT,
    lease_until      BIGINT,
    created_at       BIGINT NOT NULL,
    finished_at      BIGINT,
    UNIQUE (endpoint_id, inbox_id)
);
-- Unfinished deliveries of an endpoint, soonest first: what a claim walks.
CREATE INDEX deliveries_open ON deliveries(endpoint_id, next_attempt_at) WHERE status IN ('pending', 'sending');

CREATE TABLE delivery_attempts (
    id           BIGSERIAL PRIMARY KEY,
    delivery_id  BIGINT NOT NULL REFERENCES deliveries(id) ON DELETE CASCADE,
    endpoint_id  TEXT NOT NULL,
    attempt      BIGINT NOT NULL,
    at           BIGINT NOT NULL,
    status_code  BIGINT,                            -- the HTTP status; NULL when none came
    error        TEXT,                              -- why it failed, in words
    duration_ms  BIGINT NOT NULL,
    response     TEXT                               -- the first bytes of the answer
);
CREATE INDEX delivery_attempts_endpoint ON delivery_attempts(endpoint_id, id);
CREATE INDEX delivery_attempts_delivery ON delivery_attempts(delivery_id);

-- Ingest decides what forwarding needs in the statement that stores the events (so in the same commit, before VK
-- hears `ok`): one delivery per enabled endpoint that wants an event's type. Once per statement, over the rows it
-- inserted (VK's retries insert nothing, so they make no delivery either).
CREATE FUNCTION inbox_forward() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO deliveries (endpoint_id, group_id, inbox_id, event_id, event_type, next_attempt_at, created_at)
    SELECT e.id, n.group_id, n.id, n.event_id, n.event_type, n.received_at, n.received_at
      FROM new_events n
      JOIN endpoints e ON e.group_id = n.group_id AND e.enabled
       AND (e.event_types = '' OR position(',' || n.event_type || ',' IN ',' || e.event_types || ',') > 0)
     ORDER BY n.id, e.id;
    RETURN NULL;
END $$;
CREATE TRIGGER inbox_forward AFTER INSERT ON inbox_events
    REFERENCING NEW TABLE AS new_events FOR EACH STATEMENT EXECUTE FUNCTION inbox_forward();
-- Given-up deliveries of an endpoint: «Повторить неудачные» and the card's count (few rows, so a small index).
CREATE INDEX deliveries_failed ON deliveries(endpoint_id) WHERE status = 'failed';

-- Alerts: what the admin who connected a community is told (a dead key, an endpoint disabled, VK's status failed),
-- once when it starts and at most daily while it lasts. One open alert per (community, kind, subject).
ALTER TABLE community_settings ADD COLUMN alert_email TEXT;  -- where alert e-mails go (the admin's choice)
CREATE TABLE alerts (
    id            BIGSERIAL PRIMARY KEY,
    group_id      BIGINT NOT NULL REFERENCES communities(id) ON DELETE CASCADE,
    kind          TEXT NOT NULL,                    -- bot_paused | endpoint_disabled | vk_failed
    subject       TEXT NOT NULL DEFAULT '',         -- the endpoint's id, for endpoint_disabled
    detail        TEXT NOT NULL DEFAULT '',         -- words for the message (an endpoint's name and why)
    started_at    BIGINT NOT NULL,
    resolved_at   BIGINT,
    sends         BIGINT NOT NULL DEFAULT 0,          -- how many times the admin was told
    last_sent_at  BIGINT NOT NULL DEFAULT 0,
    vk_result     TEXT,                             -- sent | not_allowed | no_key | failed
    email_result  TEXT                              -- sent | failed | not_configured | no_address
);
CREATE UNIQUE INDEX alerts_open ON alerts(group_id, kind, subject) WHERE resolved_at IS NULL;
CREATE INDEX alerts_group ON alerts(group_id, id);

-- «Проверить путь»: the last synthetic event sent through the public URL, and what came of it.
ALTER TABLE community_settings ADD COLUMN path_check_at BIGINT;
ALTER TABLE community_settings ADD COLUMN path_check_outcome TEXT;  -- arrived | unreachable | tls | redirect | answered | timeout
ALTER TABLE community_settings ADD COLUMN path_check_detail TEXT;   -- milliseconds, or what came back instead of ok
