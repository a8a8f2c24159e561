-- Workspace settings, the model registry and the references services hold on models.

CREATE TABLE settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) STRICT;

-- The last version ever assigned per model name: versions are never reused, even
-- after a delete, so a `name:version` written into a metadata file always means
-- the same content.
CREATE TABLE model_names (
    name         TEXT PRIMARY KEY,
    last_version INTEGER NOT NULL
) STRICT;

CREATE TABLE models (
    id                INTEGER PRIMARY KEY,
    name              TEXT NOT NULL,
    version           INTEGER NOT NULL,
    kind              TEXT NOT NULL CHECK (kind IN ('file', 'folder')),
    asset_name        TEXT NOT NULL,
    description       TEXT,
    tags              TEXT NOT NULL DEFAULT '{}',
    properties        TEXT NOT NULL DEFAULT '{}',
    framework         TEXT,
    framework_version TEXT,
    experiment_name   TEXT,
    run_id            TEXT,
    size              INTEGER NOT NULL,
    file_count        INTEGER NOT NULL,
    content_digest    TEXT NOT NULL,
    created_time      TEXT NOT NULL,
    created_by        TEXT NOT NULL,
    UNIQUE (name, version)
) STRICT;

CREATE TABLE model_files (
    model_id INTEGER NOT NULL REFERENCES models (id) ON DELETE CASCADE,
    path     TEXT NOT NULL,
    size     INTEGER NOT NULL,
    digest   TEXT NOT NULL,
    mode     INTEGER NOT NULL,
    PRIMARY KEY (model_id, path)
) STRICT;

CREATE INDEX model_files_by_digest ON model_files (digest);

-- Which service uses which model version; a referenced version cannot be deleted.
CREATE TABLE model_references (
    service       TEXT NOT NULL,
    model_name    TEXT NOT NULL,
    model_version INTEGER NOT NULL,
    PRIMARY KEY (model_name, model_version, service)
) STRICT;
