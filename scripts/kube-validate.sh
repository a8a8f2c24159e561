#!/usr/bin/env bash
# Validates Berth's Kubernetes manifests (the golden files the Rust tests compare with) against
# the official schemas of the pinned Kubernetes version, with a pinned `kubernetes-validate`
# installed into a venv under target/ when missing. Exits non-zero when a manifest is invalid or
# when the validator cannot be installed or run: it never skips.
#   scripts/kube-validate.sh [FILE...]   (default: every golden file)
set -euo pipefail
cd "$(dirname "$0")/.."

KUBERNETES_VERSION="1.33.0"       # k8s-openapi is built with feature v1_33
VALIDATOR="kubernetes-validate==1.37.0"
venv="target/kube-validate-venv"

if [[ ! -x "$venv/bin/kubernetes-validate" ]]; then
    python3 -m venv "$venv" >&2 || { echo "error: cannot create the venv $venv (python3 -m venv)" >&2; exit 2; }
    "$venv/bin/pip" install --quiet --disable-pip-version-check "$VALIDATOR" >&2 \
        || { echo "error: cannot install $VALIDATOR into $venv (is PyPI reachable?)" >&2; exit 2; }
fi

files=("$@")
if [[ ${#files[@]} -eq 0 ]]; then
    files=(crates/berth-server/src/compute/kubernetes/golden/*.json)
fi
if [[ ! -e "${files[0]}" ]]; then
    echo "error: no manifests to validate (${files[0]})" >&2
    exit 2
fi
"$venv/bin/kubernetes-validate" --strict --kubernetes-version "$KUBERNETES_VERSION" "${files[@]}"
