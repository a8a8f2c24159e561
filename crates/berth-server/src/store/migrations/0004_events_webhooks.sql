-- Workspace events (a bounded, ordered log) and the webhooks they are pushed to.
CREATE TABLE events (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    time      TEXT NOT NULL,
    type      TEXT NOT NULL,
    service   TEXT,
    operation TEXT,
    data      TEXT NOT NULL
);
CREATE INDEX events_by_service ON events (service, id);
CREATE INDEX events_by_type ON events (type, id);

CREATE TABLE webhooks (
    id                   TEXT PRIMARY KEY,
    url                  TEXT NOT NULL,
    events               TEXT NOT NULL,
    secret               TEXT NOT NULL,
    created_time         TEXT NOT NULL,
    last_status          TEXT,
    last_time            TEXT,
    last_error           TEXT,
    consecutive_failures INTEGER NOT NULL DEFAULT 0,
    -- The newest event handed over (delivered or given up on): a restart
    -- resumes delivery after it.
    delivered_through    INTEGER NOT NULL DEFAULT 0
);
