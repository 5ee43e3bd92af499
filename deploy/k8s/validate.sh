#!/usr/bin/env bash
# Validate the Kubernetes manifests in this directory offline against the Kubernetes API
# schemas (strict: an unknown field fails), with the PyPI package `kubernetes-validate` in a
# virtualenv under target/ (created and filled on first use). Exits non-zero on any invalid
# document, and when the checker cannot be installed.
#   deploy/k8s/validate.sh               validate every *.yaml here
#   deploy/k8s/validate.sh FILE...       validate these files
#   deploy/k8s/validate.sh --install     only install the checker
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo_root="$(cd "${here}/../.." && pwd)"
venv="${MODELGATE_K8S_VENV:-${repo_root}/target/k8s-venv}"
requirements="${here}/requirements.txt"
stamp="${venv}/.modelgate-k8s-requirements.sha256"
kubernetes_version="${MODELGATE_K8S_VERSION:-1.30.0}"

if [[ ! -x "${venv}/bin/python" ]]; then
    echo "validate.sh: creating virtualenv at ${venv}" >&2
    mkdir -p "$(dirname "${venv}")"
    python3 -m venv "${venv}"
fi
wanted="$(sha256sum "${requirements}" | cut -d' ' -f1)"
if [[ "${wanted}" != "$(cat "${stamp}" 2>/dev/null || true)" ]]; then
    echo "validate.sh: installing kubernetes-validate into ${venv}" >&2
    "${venv}/bin/python" -m pip install --quiet --disable-pip-version-check -r "${requirements}"
    printf '%s\n' "${wanted}" > "${stamp}"
fi
[[ "${1:-}" == "--install" ]] && exit 0

if [[ $# -gt 0 ]]; then files=("$@"); else files=("${here}"/*.yaml); fi
exec "${venv}/bin/kubernetes-validate" --strict -k "${kubernetes_version}" "${files[@]}"
