#!/usr/bin/env bash
# Make sure the Python virtualenv with the SDKs the tests use (tests/sdk/requirements.txt) exists
# and is up to date, then print its python's path. Several tests may call this at once: the
# check-and-install runs under a lock.
set -euo pipefail

script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo_root="$(cd "${script_dir}/../.." && pwd)"
venv="${MODELGATE_SDK_VENV:-${repo_root}/target/sdk-venv}"
requirements="${script_dir}/requirements.txt"
stamp="${venv}/.modelgate-sdk-requirements.sha256"

mkdir -p "$(dirname "${venv}")"
exec 9>"${venv}.lock"
flock 9
if [[ ! -x "${venv}/bin/python" ]]; then
    echo "venv.sh: creating virtualenv at ${venv}" >&2
    python3 -m venv "${venv}"
fi
wanted="$(sha256sum "${requirements}" | cut -d' ' -f1)"
installed="$(cat "${stamp}" 2>/dev/null || true)"
if [[ "${wanted}" != "${installed}" ]]; then
    echo "venv.sh: installing Python requirements into ${venv}" >&2
    "${venv}/bin/python" -m pip install --quiet --disable-pip-version-check -r "${requirements}"
    printf '%s\n' "${wanted}" > "${stamp}"
fi
printf '%s\n' "${venv}/bin/python"
