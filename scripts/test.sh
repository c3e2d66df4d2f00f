#!/usr/bin/env bash
# `npm test`: installs if needed, builds, makes sure Kafka and PostgreSQL are up (idempotent),
# then runs every test. Arguments filter test files by path substring.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/lib.sh
source scripts/install.sh
npm run -s build
bash scripts/services-up.sh
node scripts/run-tests.js "$@"
