-- vkhook schema, PostgreSQL. Same tables and versions as the SQLite set. Times are Unix milliseconds.

CREATE TABLE users (
    id          BIGINT PRIMARY KEY,
    first_name  TEXT NOT NULL,
    last_name   TEXT NOT NULL,
    avatar      TEXT,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);

CREATE TABLE user_tokens (
    user_id        BIGINT PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
    access_token   TEXT NOT NULL,
    refresh_token  TEXT NOT NULL,
    device_id      TEXT NOT NULL,
    scopes         TEXT NOT NULL,
    expires_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL
);

CREATE TABLE sessions (
    id_hash       TEXT PRIMARY KEY,
    user_id       BIGINT REFERENCES users(id) ON DELETE CASCADE,
    csrf_token    TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    last_seen_at  BIGINT NOT NULL
);
CREATE INDEX sessions_user ON sessions(user_id);

CREATE TABLE oauth_states (
    state_hash    TEXT PRIMARY KEY,
    session_hash  TEXT NOT NULL,
    kind          TEXT NOT NULL,
    verifier      TEXT,
    group_id      BIGINT,
    created_at    BIGINT NOT NULL
);

CREATE TABLE communities (
    id           BIGINT PRIMARY KEY,
    name         TEXT NOT NULL,
    screen_name  TEXT NOT NULL,
    photo        TEXT,
    updated_at   BIGINT NOT NULL
);

CREATE TABLE community_admins (
    user_id     BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    group_id    BIGINT NOT NULL REFERENCES communities(id) ON DELETE CASCADE,
    role        TEXT NOT NULL,
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (user_id, group_id)
);

CREATE TABLE community_settings (
    group_id             BIGINT PRIMARY KEY REFERENCES communities(id) ON DELETE CASCADE,
    confirmation_code    TEXT,
    callback_configured  BOOLEAN NOT NULL DEFAULT false,
    setup_mode           TEXT NOT NULL DEFAULT 'api',
    server_id            BIGINT,
    secret               TEXT,
    previous_secret      TEXT,
    api_version          TEXT,
    events               TEXT NOT NULL DEFAULT '',
    community_token      TEXT,
    token_scopes         TEXT NOT NULL DEFAULT '',
    status               TEXT NOT NULL DEFAULT 'not_connected',
    vk_server_status     TEXT,
    connected_at         BIGINT,
    connected_by         BIGINT,
    last_check_at        BIGINT,
    last_error           TEXT,
    last_error_at        BIGINT,
    last_confirmation_at BIGINT,                  -- when VK last asked us for the code
    bot_comments         BOOLEAN NOT NULL DEFAULT false,  -- the bot answers comments
    bot_messages         BOOLEAN NOT NULL DEFAULT false,  -- the bot answers messages
    default_reply        TEXT,                  -- when no rule matches (none: stay silent)
    paused_reason        TEXT,                  -- the bot is paused (e.g. the token died)
    updated_at           BIGINT NOT NULL
);

CREATE TABLE community_setups (
    group_id           BIGINT PRIMARY KEY REFERENCES communities(id) ON DELETE CASCADE,
    run_id             TEXT NOT NULL,
    state              TEXT NOT NULL,
    step_token         TEXT NOT NULL DEFAULT 'pending',
    step_code          TEXT NOT NULL DEFAULT 'pending',
    step_server        TEXT NOT NULL DEFAULT 'pending',
    step_events        TEXT NOT NULL DEFAULT 'pending',
    step_confirm       TEXT NOT NULL DEFAULT 'pending',
    error_kind         TEXT,
    error_detail       TEXT,
    started_by         BIGINT NOT NULL,
    started_at         BIGINT NOT NULL,
    updated_at         BIGINT NOT NULL,
    finished_at        BIGINT,
    vk_calls           BIGINT NOT NULL DEFAULT 0,
    replace_server_id  BIGINT,
    lease_until        BIGINT NOT NULL DEFAULT 0,
    bot_enabled        BOOLEAN NOT NULL DEFAULT false,
    bot_reply          TEXT
);

-- The bot's rules, in order: «если текст содержит … → ответить …».
CREATE TABLE reply_rules (
    id          BIGSERIAL PRIMARY KEY,
    group_id    BIGINT NOT NULL REFERENCES communities(id) ON DELETE CASCADE,
    position    BIGINT NOT NULL,
    keywords    TEXT NOT NULL,                  -- comma-separated
    reply       TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);
CREATE INDEX reply_rules_group ON reply_rules(group_id, position);

-- Every event VK delivered, stored before we answer `ok`. (group_id, event_id) is unique: VK's retries add nothing.
CREATE TABLE inbox_events (
    id               BIGSERIAL PRIMARY KEY,
    group_id         BIGINT NOT NULL,
    event_id         TEXT NOT NULL,
    event_type       TEXT NOT NULL,
    payload          TEXT NOT NULL,             -- the request body without `secret`
    received_at      BIGINT NOT NULL,
    status           TEXT NOT NULL DEFAULT 'pending',  -- pending | processing | done | failed | dead | ignored
    attempts         BIGINT NOT NULL DEFAULT 0,
    next_attempt_at  BIGINT NOT NULL,
    lease_owner      TEXT,
    lease_until      BIGINT,
    result           TEXT,                      -- JSON: what the bot did, or why not
    last_error       TEXT,
    processed_at     BIGINT,
    UNIQUE (group_id, event_id)
);
-- Unfinished events by community, oldest first: the claim walks this to each community's next event.
CREATE INDEX inbox_open ON inbox_events(group_id, id) WHERE status IN ('pending', 'processing');
CREATE INDEX inbox_group ON inbox_events(group_id, id);

-- What the bot sent, and VK's id for it.
CREATE TABLE replies (
    id          BIGSERIAL PRIMARY KEY,
    group_id    BIGINT NOT NULL,
    inbox_id    BIGINT NOT NULL,
    kind        TEXT NOT NULL,                  -- comment | message
    rule_id     BIGINT,
    text        TEXT NOT NULL,
    vk_id       BIGINT,
    status      TEXT NOT NULL,                  -- sent | failed
    error       TEXT,
    created_at  BIGINT NOT NULL
);
CREATE INDEX replies_group ON replies(group_id, created_at);

-- What vkhook did on its own for a community (reconcile repairs, pauses), for the admin to read.
CREATE TABLE community_log (
    id        BIGSERIAL PRIMARY KEY,
    group_id  BIGINT NOT NULL,
    at        BIGINT NOT NULL,
    kind      TEXT NOT NULL,
    message   TEXT NOT NULL
);
CREATE INDEX community_log_group ON community_log(group_id, at);

-- Which instance sends to VK for a community right now (one at a time: its order and its rate limit hold
-- across instances). Taken with each claim, renewed while events keep coming, free once it expires.
CREATE TABLE community_leases (
    group_id  BIGINT PRIMARY KEY,
    owner     TEXT NOT NULL,
    until     BIGINT NOT NULL
);
