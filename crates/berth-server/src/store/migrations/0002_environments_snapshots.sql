-- Registered environments and uploaded source snapshots.

CREATE TABLE environment_names (
    name         TEXT PRIMARY KEY,
    last_version INTEGER NOT NULL
) STRICT;

-- `spec` is the normalised spec as JSON; `spec_digest` covers everything in it
-- (a changed variable makes a new version); `build_hash` covers only what the
-- build depends on (two versions differing in variables share one build).
CREATE TABLE environments (
    id           INTEGER PRIMARY KEY,
    name         TEXT NOT NULL,
    version      INTEGER NOT NULL,
    spec         TEXT NOT NULL,
    spec_digest  TEXT NOT NULL,
    build_hash   TEXT NOT NULL,
    warnings     TEXT NOT NULL DEFAULT '[]',
    description  TEXT,
    created_time TEXT NOT NULL,
    UNIQUE (name, version)
) STRICT;

CREATE TABLE snapshots (
    digest       TEXT PRIMARY KEY,
    size         INTEGER NOT NULL,
    file_count   INTEGER NOT NULL,
    created_time TEXT NOT NULL
) STRICT;

CREATE TABLE snapshot_files (
    snapshot TEXT NOT NULL REFERENCES snapshots (digest) ON DELETE CASCADE,
    path     TEXT NOT NULL,
    size     INTEGER NOT NULL,
    digest   TEXT NOT NULL,
    mode     INTEGER NOT NULL,
    PRIMARY KEY (snapshot, path)
) STRICT;

CREATE INDEX snapshot_files_by_digest ON snapshot_files (digest);
