#!/usr/bin/env bash
# Sets up .venv and runs the test suite.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
cd "$ROOT"
python -m pytest -q tests "$@"
