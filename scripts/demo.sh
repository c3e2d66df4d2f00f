#!/usr/bin/env bash
# The main job on a fresh machine: install, build, start Kafka and PostgreSQL, run the
# engine, send a short load of commands and print the resulting balances.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/lib.sh
source scripts/install.sh
npm run -s build
bash scripts/services-up.sh
node dist/io/demo.js
