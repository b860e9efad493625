-- Unfinished events in arrival order, over all communities: the backlog's oldest event in one index step.
CREATE INDEX inbox_open_by_id ON inbox_events(id) WHERE status IN ('pending', 'processing');
