-- Several servers on one store: the leases whose holders run the reconciler.
-- `fence` grows on every change of holder; `expires_at` is on the database's clock.
CREATE TABLE berth_leases (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    fence BIGINT NOT NULL CHECK (fence > 0),
    expires_at TIMESTAMPTZ NOT NULL
);
