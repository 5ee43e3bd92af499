#!/usr/bin/env bash
# Run the OpenAI Python SDK compatibility suite against a running ModelGate.
#
# Requires MODELGATE_BASE_URL and MODELGATE_API_KEY (MODELGATE_MODEL optional).
# Extra arguments are passed through to pytest, e.g. `tests/sdk/run.sh -k stream`.
set -euo pipefail

script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo_root="$(cd "${script_dir}/../.." && pwd)"
venv="${MODELGATE_SDK_VENV:-${repo_root}/target/sdk-venv}"
requirements="${script_dir}/requirements.txt"
stamp="${venv}/.modelgate-sdk-requirements.sha256"

if [[ ! -x "${venv}/bin/python" ]]; then
    echo "run.sh: creating virtualenv at ${venv}" >&2
    mkdir -p "$(dirname "${venv}")"
    python3 -m venv "${venv}"
fi

wanted="$(sha256sum "${requirements}" | cut -d' ' -f1)"
installed="$(cat "${stamp}" 2>/dev/null || true)"
if [[ "${wanted}" != "${installed}" ]]; then
    echo "run.sh: installing Python requirements into ${venv}" >&2
    "${venv}/bin/python" -m pip install --quiet --disable-pip-version-check -r "${requirements}"
    printf '%s\n' "${wanted}" > "${stamp}"
fi

# pytest exits non-zero on failures and with status 5 when no tests were
# collected; `set -e` plus exec propagates either. The cache provider is
# disabled so no .pytest_cache directory is written into the repository.
cd "${repo_root}"
exec "${venv}/bin/python" -m pytest -q -p no:cacheprovider "${script_dir#"${repo_root}/"}" "$@"
