#!/usr/bin/env bash
# Run the OpenAI Python SDK compatibility suite against a running ModelGate.
#
# Requires MODELGATE_BASE_URL and MODELGATE_API_KEY (MODELGATE_MODEL optional).
# Extra arguments are passed through to pytest, e.g. `tests/sdk/run.sh -k stream`.
set -euo pipefail

script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo_root="$(cd "${script_dir}/../.." && pwd)"
python="$("${script_dir}/venv.sh")"

# pytest exits non-zero on failures and with status 5 when no tests were
# collected; `set -e` plus exec propagates either. The cache provider is
# disabled so no .pytest_cache directory is written into the repository.
cd "${repo_root}"
exec "${python}" -m pytest -q -p no:cacheprovider "${script_dir#"${repo_root}/"}" "$@"
