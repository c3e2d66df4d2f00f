#!/usr/bin/env bash
# The long version of the kill -9 failure test: many more rounds over a larger log.
#   CRASH_ROUNDS (default 200), CRASH_COMMANDS (default 400000), CRASH_SEED.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export CRASH_ROUNDS="${CRASH_ROUNDS:-200}" CRASH_COMMANDS="${CRASH_COMMANDS:-400000}"
source scripts/install.sh
npm run -s build
bash scripts/services-up.sh
node --test --test-timeout=0 dist/io/crash_recovery.test.js
