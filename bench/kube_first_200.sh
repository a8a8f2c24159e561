#!/usr/bin/env bash
# Deploy → first 200 of a service on the test Kubernetes cluster (the integration harness's
# test API server, whose fake kubelet runs each pod as a `berth replica` process on loopback):
# bundle fetch + environment (built per pod: each fake pod has an empty cache) + init + first
# scoring request through the gateway, and a model-only update → Succeeded. Runs the
# integration test that deploys and updates RUNS times (default 5) with BERTH_BENCH_FIGURES set,
# then prints each figure's runs and median. Usage: bash bench/kube_first_200.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-5}"
figures="$(mktemp)"
trap 'rm -f "$figures"' EXIT
cargo build -q -p berth --features kubernetes
for _ in $(seq "$runs"); do
    BERTH_BENCH_FIGURES="$figures" cargo nextest run -p berth --features kubernetes \
        --test integration --no-capture \
        -E 'test(=kube_deploy::kube_deploy_scores_through_pods_and_updates_to_a_new_deployment)' \
        >/dev/null 2>&1
done
python3 - "$figures" <<'PY'
import statistics, sys
seen = {}
for line in open(sys.argv[1]):
    name, value = line.split()
    seen.setdefault(name, []).append(float(value))
for name, values in seen.items():
    runs = ", ".join(f"{v:.0f}" for v in values)
    print(f"{name}: {runs} -> median {statistics.median(values):.0f} ms")
PY
