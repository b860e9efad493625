-- The previous callback secret is accepted until this time (Unix ms): VK retries an event for about two hours with
-- the body, and the secret, it first built (VK-FACTS.md, "Callback API delivery"). Rows that hold a previous secret
-- now get the whole window from the upgrade.
ALTER TABLE community_settings ADD COLUMN previous_secret_until BIGINT;
UPDATE community_settings
   SET previous_secret_until = (EXTRACT(EPOCH FROM now()) * 1000)::BIGINT + 7200000
 WHERE previous_secret IS NOT NULL;
