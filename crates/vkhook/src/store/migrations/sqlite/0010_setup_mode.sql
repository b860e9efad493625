-- Connecting by Bots Long Poll (issue 24): a setup run says what it sets up, Callback API (`api`) or Long Poll
-- (`long_poll`); a run that waits for the community consent continues with the same choice.
ALTER TABLE community_setups ADD COLUMN mode TEXT NOT NULL DEFAULT 'api';
