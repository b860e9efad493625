-- Several communities at once (issue 14): one record per «Подключить выбранные» / «Отключить выбранные», its
-- communities in the admin's order, and each one's outcome where the record itself holds it (a disconnect's; a
-- connect's progress is the community's setup record).
CREATE TABLE bulk_runs (
    id TEXT PRIMARY KEY,
    user_id INTEGER NOT NULL,
    kind TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE TABLE bulk_members (
    bulk_id TEXT NOT NULL REFERENCES bulk_runs (id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    group_id INTEGER NOT NULL,
    outcome TEXT,
    PRIMARY KEY (bulk_id, position)
);
CREATE INDEX bulk_runs_by_user ON bulk_runs (user_id, created_at);
-- A community authorization for several communities: the ones this consent asks for, and the bulk run it belongs to.
ALTER TABLE oauth_states ADD COLUMN group_ids TEXT;
ALTER TABLE oauth_states ADD COLUMN bulk_id TEXT;
