-- Several servers on one store: the leases whose holders run the reconciler.
-- `fence` grows on every change of holder; `expires_at` is on the database's clock.
CREATE TABLE berth_leases (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    fence BIGINT NOT NULL CHECK (fence > 0),
    expires_at TIMESTAMPTZ NOT NULL
);

-- The gateway routes the leader publishes for every server's gateway: per
-- service the revisions, weights and replica addresses (no secrets), or NULL
-- once it serves nothing; `version` orders every publication.
CREATE TABLE berth_routes (
    service TEXT PRIMARY KEY,
    route TEXT,
    version BIGINT NOT NULL
);
CREATE INDEX berth_routes_version ON berth_routes (version);
