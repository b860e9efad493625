-- Bots Long Poll (issue 24): a community vkhook polls, and where it is. One poller per community across instances
-- (owner, lease_until); `ts` moves only in the commit that stores the events it follows.
CREATE TABLE long_poll (
    group_id       BIGINT PRIMARY KEY,
    ts             TEXT,                       -- where the next check starts; NULL: VK's ts of the next session
    switched_on    TEXT NOT NULL DEFAULT '',   -- event types vkhook switched on at VK (comma-separated)
    enabled_by_us  BOOLEAN NOT NULL DEFAULT FALSE, -- vkhook switched Long Poll itself on (so only it switches it off)
    owner          TEXT,
    lease_until    BIGINT NOT NULL DEFAULT 0,
    trouble        TEXT,                       -- why polling stopped (off_at_vk); NULL while it runs
    last_check_at  BIGINT,                     -- the last answered check (Unix ms)
    created_at     BIGINT NOT NULL
);
-- Events VK will not send again: from, to (Unix ms) and why. The next issue's backfill reads them.
CREATE TABLE gaps (
    id          BIGSERIAL PRIMARY KEY,
    group_id    BIGINT NOT NULL,
    from_at     BIGINT NOT NULL,
    to_at       BIGINT NOT NULL,
    why         TEXT NOT NULL,                 -- long_poll_history_lost | long_poll_information_lost
    created_at  BIGINT NOT NULL
);
CREATE INDEX gaps_group ON gaps(group_id, from_at);
