-- Roles without the `groups` scope, messages that may not arrive, and dedup keys that never collide (issue 21).

-- When VK last confirmed the user's role (its list, `groups.getById` with `groups`, `groups.getMembers` of the
-- managers, or a community consent, which only an administrator can give); NULL: never. `role` may be `unknown`: a
-- community added by link when VK does not say who manages it.
ALTER TABLE community_admins ADD COLUMN proven_at INTEGER;
-- Rows written before held only roles VK stated (`admin_level`): proven when they were written.
UPDATE community_admins SET proven_at = updated_at;

-- `random_id` of `messages.send` from a counter per community, reserved before the first send and kept for every
-- retry. 0: not started yet (the first reservation starts it at a random place).
ALTER TABLE community_settings ADD COLUMN next_random_id INTEGER NOT NULL DEFAULT 0;
ALTER TABLE inbox_events ADD COLUMN reply_random_id INTEGER;
ALTER TABLE alerts ADD COLUMN random_id INTEGER;
-- Why VK refused an alert's message (a bot reason: messages_not_allowed, chat_disabled, …).
ALTER TABLE alerts ADD COLUMN vk_reason TEXT;

-- Whether a person lets the community write to them: from `messages.isMessagesFromGroupAllowed`, and from their
-- `message_allow` / `message_deny` events, which update it in the statement that stores them.
CREATE TABLE message_permissions (
    group_id    INTEGER NOT NULL,
    user_id     INTEGER NOT NULL,
    allowed     BOOLEAN NOT NULL,
    checked_at  INTEGER NOT NULL,
    PRIMARY KEY (group_id, user_id)
);
CREATE TRIGGER inbox_message_permission AFTER INSERT ON inbox_events
WHEN NEW.event_type IN ('message_allow', 'message_deny') AND json_valid(NEW.payload)
     AND json_type(NEW.payload, '$.object.user_id') = 'integer'
BEGIN
    INSERT INTO message_permissions (group_id, user_id, allowed, checked_at)
    VALUES (NEW.group_id, json_extract(NEW.payload, '$.object.user_id'), NEW.event_type = 'message_allow',
            NEW.received_at)
    ON CONFLICT (group_id, user_id) DO UPDATE SET allowed = excluded.allowed, checked_at = excluded.checked_at
     WHERE excluded.checked_at >= message_permissions.checked_at;
END;
