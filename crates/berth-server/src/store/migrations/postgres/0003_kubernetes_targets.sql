-- Kubernetes-backed compute targets: how the cluster is reached (kubeconfig, a
-- secret never returned, or in-cluster), the namespace, image and server URL.
-- NULL for targets that run on the local target.
ALTER TABLE compute_targets ADD COLUMN kubernetes TEXT;
