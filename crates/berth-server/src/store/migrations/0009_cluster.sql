-- The leases whose holders run the reconciler (the same table as PostgreSQL's,
-- so the fencing rules hold on both backends). `fence` grows on every change of
-- holder; `expires_ms` is Unix milliseconds on the database's clock.
CREATE TABLE berth_leases (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    fence INTEGER NOT NULL CHECK (fence > 0),
    expires_ms INTEGER NOT NULL
);

-- The gateway routes the leader publishes (as on PostgreSQL).
CREATE TABLE berth_routes (
    service TEXT PRIMARY KEY,
    route TEXT,
    version INTEGER NOT NULL
);
CREATE INDEX berth_routes_version ON berth_routes (version);
