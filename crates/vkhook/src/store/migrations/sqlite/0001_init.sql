-- vkhook schema, SQLite. Times are Unix milliseconds. Columns holding vault values are marked "vault".

CREATE TABLE users (
    id          INTEGER PRIMARY KEY,            -- VK user id
    first_name  TEXT NOT NULL,
    last_name   TEXT NOT NULL,
    avatar      TEXT,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);

CREATE TABLE user_tokens (
    user_id        INTEGER PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
    access_token   TEXT NOT NULL,               -- vault
    refresh_token  TEXT NOT NULL,               -- vault
    device_id      TEXT NOT NULL,
    scopes         TEXT NOT NULL,
    expires_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL
);

CREATE TABLE sessions (
    id_hash       TEXT PRIMARY KEY,             -- SHA-256 of the cookie value
    user_id       INTEGER REFERENCES users(id) ON DELETE CASCADE,
    csrf_token    TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    last_seen_at  INTEGER NOT NULL
);
CREATE INDEX sessions_user ON sessions(user_id);

CREATE TABLE oauth_states (
    state_hash    TEXT PRIMARY KEY,             -- SHA-256 of `state`
    session_hash  TEXT NOT NULL,
    kind          TEXT NOT NULL,                -- vkid | community
    verifier      TEXT,                         -- vault (PKCE verifier)
    group_id      INTEGER,
    created_at    INTEGER NOT NULL
);

CREATE TABLE communities (
    id           INTEGER PRIMARY KEY,           -- VK community id
    name         TEXT NOT NULL,
    screen_name  TEXT NOT NULL,
    photo        TEXT,
    updated_at   INTEGER NOT NULL
);

CREATE TABLE community_admins (
    user_id     INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    group_id    INTEGER NOT NULL REFERENCES communities(id) ON DELETE CASCADE,
    role        TEXT NOT NULL,                  -- administrator | editor | moderator
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (user_id, group_id)
);

-- The seed's table: confirmation_code and callback_configured, and everything the connection needs.
CREATE TABLE community_settings (
    group_id             INTEGER PRIMARY KEY REFERENCES communities(id) ON DELETE CASCADE,
    confirmation_code    TEXT,
    callback_configured  BOOLEAN NOT NULL DEFAULT 0,
    setup_mode           TEXT NOT NULL DEFAULT 'api',  -- api | manual
    server_id            INTEGER,
    secret               TEXT,                  -- vault
    previous_secret      TEXT,                  -- vault: accepted until an event arrives with `secret`
    api_version          TEXT,
    events               TEXT NOT NULL DEFAULT '',  -- comma-separated event types we set
    community_token      TEXT,                  -- vault
    token_scopes         TEXT NOT NULL DEFAULT '',
    status               TEXT NOT NULL DEFAULT 'not_connected', -- not_connected | connecting | connected | failed | needs_reauth
    vk_server_status     TEXT,
    connected_at         INTEGER,
    connected_by         INTEGER,
    last_check_at        INTEGER,
    last_error           TEXT,
    last_error_at        INTEGER,
    last_confirmation_at INTEGER,                  -- when VK last asked us for the code
    bot_comments         BOOLEAN NOT NULL DEFAULT 0,  -- the bot answers comments
    bot_messages         BOOLEAN NOT NULL DEFAULT 0,  -- the bot answers messages
    default_reply        TEXT,                  -- when no rule matches (none: stay silent)
    paused_reason        TEXT,                  -- the bot is paused (e.g. the token died)
    updated_at           INTEGER NOT NULL
);

-- The connect flow's record: one current run per community, each step's state, a lease for the runner.
CREATE TABLE community_setups (
    group_id           INTEGER PRIMARY KEY REFERENCES communities(id) ON DELETE CASCADE,
    run_id             TEXT NOT NULL,
    state              TEXT NOT NULL,           -- waiting_token | running | done | failed
    step_token         TEXT NOT NULL DEFAULT 'pending',  -- pending | running | done | failed
    step_code          TEXT NOT NULL DEFAULT 'pending',
    step_server        TEXT NOT NULL DEFAULT 'pending',
    step_events        TEXT NOT NULL DEFAULT 'pending',
    step_confirm       TEXT NOT NULL DEFAULT 'pending',
    error_kind         TEXT,
    error_detail       TEXT,
    started_by         INTEGER NOT NULL,
    started_at         INTEGER NOT NULL,
    updated_at         INTEGER NOT NULL,
    finished_at        INTEGER,
    vk_calls           INTEGER NOT NULL DEFAULT 0,
    replace_server_id  INTEGER,
    lease_until        INTEGER NOT NULL DEFAULT 0,
    bot_enabled        BOOLEAN NOT NULL DEFAULT 0,
    bot_reply          TEXT
);

-- The bot's rules, in order: «если текст содержит … → ответить …».
CREATE TABLE reply_rules (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    group_id    INTEGER NOT NULL REFERENCES communities(id) ON DELETE CASCADE,
    position    INTEGER NOT NULL,
    keywords    TEXT NOT NULL,                  -- comma-separated
    reply       TEXT NOT NULL,
    created_at  INTEGER NOT NULL
);
CREATE INDEX reply_rules_group ON reply_rules(group_id, position);

-- Every event VK delivered, stored before we answer `ok`. (group_id, event_id) is unique: VK's retries add nothing.
CREATE TABLE inbox_events (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    group_id         INTEGER NOT NULL,
    event_id         TEXT NOT NULL,
    event_type       TEXT NOT NULL,
    payload          TEXT NOT NULL,             -- the request body without `secret`
    received_at      INTEGER NOT NULL,
    status           TEXT NOT NULL DEFAULT 'pending',  -- pending | processing | done | failed | dead | ignored
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  INTEGER NOT NULL,
    lease_owner      TEXT,
    lease_until      INTEGER,
    result           TEXT,                      -- JSON: what the bot did, or why not
    last_error       TEXT,
    processed_at     INTEGER,
    UNIQUE (group_id, event_id)
);
-- Unfinished events by community, oldest first: the claim walks this to each community's next event.
CREATE INDEX inbox_open ON inbox_events(group_id, id) WHERE status IN ('pending', 'processing');
CREATE INDEX inbox_group ON inbox_events(group_id, id);

-- What the bot sent, and VK's id for it.
CREATE TABLE replies (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    group_id    INTEGER NOT NULL,
    inbox_id    INTEGER NOT NULL,
    kind        TEXT NOT NULL,                  -- comment | message
    rule_id     INTEGER,
    text        TEXT NOT NULL,
    vk_id       INTEGER,
    status      TEXT NOT NULL,                  -- sent | failed
    error       TEXT,
    created_at  INTEGER NOT NULL
);
CREATE INDEX replies_group ON replies(group_id, created_at);

-- What vkhook did on its own for a community (reconcile repairs, pauses), for the admin to read.
CREATE TABLE community_log (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    group_id  INTEGER NOT NULL,
    at        INTEGER NOT NULL,
    kind      TEXT NOT NULL,
    message   TEXT NOT NULL
);
CREATE INDEX community_log_group ON community_log(group_id, at);

-- Which instance sends to VK for a community right now (one at a time: its order and its rate limit hold
-- across instances). Taken with each claim, renewed while events keep coming, free once it expires.
CREATE TABLE community_leases (
    group_id  INTEGER PRIMARY KEY,
    owner     TEXT NOT NULL,
    until     INTEGER NOT NULL
);
