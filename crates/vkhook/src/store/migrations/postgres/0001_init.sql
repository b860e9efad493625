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
    updated_at           BIGINT NOT NULL
);
