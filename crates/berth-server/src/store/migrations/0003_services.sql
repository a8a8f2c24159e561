-- Services, their immutable revisions, and the operations that change them.

CREATE TABLE services (
    name             TEXT PRIMARY KEY,
    description      TEXT,
    tags             TEXT NOT NULL DEFAULT '{}',
    properties       TEXT NOT NULL DEFAULT '{}',
    created_time     TEXT NOT NULL,
    updated_time     TEXT NOT NULL,
    latest_revision  INTEGER NOT NULL,
    serving_revision INTEGER,
    state            TEXT NOT NULL,
    error            TEXT,
    primary_key      TEXT NOT NULL,
    secondary_key    TEXT NOT NULL,
    last_operation   TEXT
) STRICT;

CREATE TABLE revisions (
    service      TEXT NOT NULL,
    number       INTEGER NOT NULL,
    spec         TEXT NOT NULL,
    created_time TEXT NOT NULL,
    PRIMARY KEY (service, number)
) STRICT;

CREATE TABLE operations (
    id              TEXT PRIMARY KEY,
    service         TEXT NOT NULL,
    kind            TEXT NOT NULL,
    state           TEXT NOT NULL,
    target_revision INTEGER,
    created_time    TEXT NOT NULL,
    end_time        TEXT,
    error           TEXT
) STRICT;

CREATE INDEX operations_by_service ON operations (service, created_time);

-- At most one operation in flight per service, enforced by the database itself.
CREATE UNIQUE INDEX one_active_operation_per_service
    ON operations (service) WHERE state IN ('NotStarted', 'Running');

CREATE TABLE operation_events (
    operation  TEXT NOT NULL,
    seq        INTEGER NOT NULL,
    time       TEXT NOT NULL,
    elapsed_ms INTEGER NOT NULL,
    message    TEXT NOT NULL,
    PRIMARY KEY (operation, seq)
) STRICT;
