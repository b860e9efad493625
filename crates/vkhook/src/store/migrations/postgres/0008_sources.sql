-- Every way in (issue 23): an event is stored the same whichever source brought it, and says which.
ALTER TABLE inbox_events ADD COLUMN source TEXT NOT NULL DEFAULT 'callback';  -- callback | long_poll | backfill
-- The key of the object an event creates (a message, a comment, a post: `vk::Event::natural_key`): a copy of the
-- same object from another source, under another event_id, is not stored twice.
ALTER TABLE inbox_events ADD COLUMN natural_key TEXT;
CREATE UNIQUE INDEX inbox_natural_key ON inbox_events(group_id, natural_key) WHERE natural_key IS NOT NULL;
