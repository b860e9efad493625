-- Roles without the `groups` scope, messages that may not arrive, and dedup keys that never collide (issue 21).

-- When VK last confirmed the user's role (its list, `groups.getById` with `groups`, `groups.getMembers` of the
-- managers, or a community consent, which only an administrator can give); NULL: never. `role` may be `unknown`: a
-- community added by link when VK does not say who manages it.
ALTER TABLE community_admins ADD COLUMN proven_at BIGINT;
-- Rows written before held only roles VK stated (`admin_level`): proven when they were written.
UPDATE community_admins SET proven_at = updated_at;

-- `random_id` of `messages.send` from a counter per community, reserved before the first send and kept for every
-- retry. 0: not started yet (the first reservation starts it at a random place).
ALTER TABLE community_settings ADD COLUMN next_random_id BIGINT NOT NULL DEFAULT 0;
ALTER TABLE inbox_events ADD COLUMN reply_random_id BIGINT;
ALTER TABLE alerts ADD COLUMN random_id BIGINT;
-- Why VK refused an alert's message (a bot reason: messages_not_allowed, chat_disabled, …).
ALTER TABLE alerts ADD COLUMN vk_reason TEXT;

-- Whether a person lets the community write to them: from `messages.isMessagesFromGroupAllowed`, and from their
-- `message_allow` / `message_deny` events, which update it in the statement that stores them.
CREATE TABLE message_permissions (
    group_id    BIGINT NOT NULL,
    user_id     BIGINT NOT NULL,
    allowed     BOOLEAN NOT NULL,
    checked_at  BIGINT NOT NULL,
    PRIMARY KEY (group_id, user_id)
);
-- Once per statement; the newest event of a person in the statement decides (one row each, so ON CONFLICT never
-- meets the same row twice). A user_id that is not a number is skipped, never an error: ingest must not fail.
CREATE FUNCTION inbox_message_permission() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO message_permissions (group_id, user_id, allowed, checked_at)
    SELECT DISTINCT ON (group_id, user_id) group_id, user_id, allowed, received_at
      FROM (SELECT n.id, n.group_id, n.received_at, n.event_type = 'message_allow' AS allowed,
                   (n.payload::jsonb -> 'object' ->> 'user_id') AS uid
              FROM new_events n
             WHERE n.event_type IN ('message_allow', 'message_deny')) p
      CROSS JOIN LATERAL (SELECT p.uid::bigint AS user_id WHERE p.uid ~ '^[0-9]{1,18}$') u
     ORDER BY group_id, user_id, p.id DESC
    ON CONFLICT (group_id, user_id) DO UPDATE SET allowed = excluded.allowed, checked_at = excluded.checked_at
     WHERE excluded.checked_at >= message_permissions.checked_at;
    RETURN NULL;
END $$;
CREATE TRIGGER inbox_message_permission AFTER INSERT ON inbox_events
    REFERENCING NEW TABLE AS new_events FOR EACH STATEMENT EXECUTE FUNCTION inbox_message_permission();
