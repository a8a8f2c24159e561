-- Compute targets created or attached by name (the built-in `local` is not stored).
CREATE TABLE compute_targets (
    name         TEXT PRIMARY KEY,
    compute_type TEXT NOT NULL,
    attached     INTEGER NOT NULL,
    properties   TEXT NOT NULL,
    created_time TEXT NOT NULL
);
