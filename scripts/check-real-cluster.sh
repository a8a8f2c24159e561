#!/usr/bin/env bash
# Checks Berth's Kubernetes pieces against a REAL cluster (kind, k3s, AKS, ...): nothing in
# this repository's test suite talks to one. Run it yourself with kubectl pointing at a
# disposable cluster; it creates the namespace NS (default berth-check) and deletes it at the end.
#
#   IMAGE=registry/berth:tag bash scripts/check-real-cluster.sh [NS]
#
# What it checks:
#   1. every golden manifest Berth sends is accepted by the cluster's API server (server-side
#      dry run, so admission and the cluster's own schema versions are applied);
#   2. the kustomize base installs, and its ServiceAccount may do exactly the calls the
#      Kubernetes target makes (`kubectl auth can-i`), and nothing cluster-wide;
#   3. the Berth server starts in the cluster and answers on its Service;
#   4. `berth compute attach --in-cluster` is accepted by that server (through a port-forward).
# Exits non-zero on the first failure.
set -euo pipefail
cd "$(dirname "$0")/.."

NS="${1:-berth-check}"
IMAGE="${IMAGE:?set IMAGE to a Berth image the cluster can pull (see Containerfile)}"
command -v kubectl >/dev/null || { echo "error: kubectl not found" >&2; exit 2; }
kubectl version >/dev/null || { echo "error: kubectl cannot reach a cluster" >&2; exit 2; }

step() { printf '\n== %s\n' "$*"; }
cleanup() { kubectl delete namespace "$NS" --ignore-not-found --wait=false >/dev/null 2>&1 || true; }
trap cleanup EXIT

kubectl create namespace "$NS" --dry-run=client -o yaml | kubectl apply -f - >/dev/null

step "1. Berth's manifests pass the cluster's server-side validation"
for f in crates/berth-server/src/compute/kubernetes/golden/*.json; do
    kind="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["kind"])' "$f")"
    if [[ "$kind" == "Scale" ]]; then
        continue   # a subresource body: checked when a Deployment is scaled below
    fi
    python3 - "$f" "$NS" <<'PY' | kubectl apply --dry-run=server -f -
import json, sys
obj = json.load(open(sys.argv[1]))
obj["metadata"]["namespace"] = sys.argv[2]
print(json.dumps(obj))
PY
done

step "2. the kustomize base installs; its ServiceAccount can do exactly what the target needs"
tmp="$(mktemp -d)"
cp deploy/kubernetes/*.yaml "$tmp/"
(cd "$tmp" && sed -i "s/^namespace: .*/namespace: $NS/" kustomization.yaml \
    && sed -i "s|newName: berth|newName: ${IMAGE%:*}|; s|newTag: dev|newTag: ${IMAGE##*:}|" kustomization.yaml)
kubectl apply -k "$tmp"
sa="system:serviceaccount:$NS:berth-server"
allowed=(
    "create deployments.apps" "get deployments.apps" "list deployments.apps" "delete deployments.apps"
    "patch deployments.apps --subresource=scale"
    "create secrets" "patch secrets" "delete secrets"
    "list pods" "watch pods" "patch pods" "get pods --subresource=log"
)
for a in "${allowed[@]}"; do
    # shellcheck disable=SC2086
    kubectl auth can-i $a --as "$sa" -n "$NS" >/dev/null || { echo "error: $sa cannot $a in $NS" >&2; exit 1; }
    echo "allowed: $a"
done
for d in "get secrets" "list secrets" "create pods" "delete pods" "patch deployments.apps" "create roles.rbac.authorization.k8s.io"; do
    # shellcheck disable=SC2086
    if kubectl auth can-i $d --as "$sa" -n "$NS" >/dev/null 2>&1; then
        echo "error: $sa may $d in $NS: the Role is wider than the target needs" >&2; exit 1
    fi
    echo "denied:  $d"
done
if kubectl auth can-i list deployments.apps --as "$sa" -n default >/dev/null 2>&1 && [[ "$NS" != default ]]; then
    echo "error: $sa may list deployments outside $NS" >&2; exit 1
fi

step "3. the server starts in the cluster"
kubectl -n "$NS" rollout status deployment/berth-server --timeout=180s

step "4. attach the cluster to that server (in-cluster credentials)"
kubectl -n "$NS" port-forward service/berth-server 18080:8080 >/dev/null 2>&1 &
pf=$!
trap 'kill $pf 2>/dev/null || true; cleanup' EXIT
sleep 3
token="$(kubectl -n "$NS" exec deploy/berth-server -- sh -c 'python3 -c "import json;print(json.load(open(\"/var/lib/berth/data/config.json\"))[\"token\"])"')"
curl -fsS -X PUT "http://127.0.0.1:18080/v1/computes/incluster" \
    -H "authorization: Bearer $token" -H 'content-type: application/json' \
    -d "{\"computeType\":\"AKS\",\"attach\":true,\"kubernetes\":{\"inCluster\":true,\"namespace\":\"$NS\",\"image\":\"$IMAGE\",\"serverUrl\":\"http://berth-server.$NS.svc:8080\"}}"
echo
echo "all checks passed against $(kubectl config current-context)"
