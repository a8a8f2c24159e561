-- Model aliases (movable names for versions) and the follow state of services
-- that follow `name@alias` or `name@latest`.

CREATE TABLE model_aliases (
    model_name    TEXT NOT NULL,
    alias         TEXT NOT NULL,
    version       INTEGER NOT NULL,
    updated_time  TEXT NOT NULL,
    PRIMARY KEY (model_name, alias)
) STRICT;

CREATE INDEX model_aliases_by_version ON model_aliases (model_name, version);

-- Per follower and reference: the version waiting to be rolled out (durable
-- intent, kept across restarts), the automatic rollout in flight, and the
-- version rejected because its rollout failed or was rolled back.
CREATE TABLE follow_state (
    service             TEXT NOT NULL,
    reference           TEXT NOT NULL,
    pending             INTEGER,
    pending_cause       TEXT,
    in_flight           INTEGER,
    in_flight_operation TEXT,
    rejected            INTEGER,
    PRIMARY KEY (service, reference)
) STRICT;
