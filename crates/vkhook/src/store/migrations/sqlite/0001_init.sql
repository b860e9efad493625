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
    updated_at           INTEGER NOT NULL
);
