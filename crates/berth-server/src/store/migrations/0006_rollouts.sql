-- Progressive delivery: the stored state of a running rollout (with its
-- operation, so a restart knows whether the candidate was exposed) and a
-- service's hand-set traffic split (NULL: the serving revision takes 100 %).

ALTER TABLE operations ADD COLUMN rollout TEXT;
ALTER TABLE services ADD COLUMN traffic TEXT;
-- The split a `Traffic` operation applies.
ALTER TABLE operations ADD COLUMN traffic TEXT;
