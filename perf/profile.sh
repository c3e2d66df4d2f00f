#!/usr/bin/env bash
# `npm run profile`: profiles the running service under load (perf/profile.ts; how to read
# the results: docs/profiling.md). Arguments pass through, for example:
#   npm run profile                          flame graphs of the main, engine and flush threads
#   npm run profile -- --gc                  GC trace summary
#   npm run profile -- --compare "--max-semi-space-size=32"
#   npm run profile -- --smoke               a short backlog (50 000 commands)
# Results go to perf/results/<time>-<mode>/, with perf/results/latest pointing at the last.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
npm run -s build
# Idempotent: starts the Kafka broker and PostgreSQL only if they are not running.
bash scripts/services-up.sh
node dist/perf/profile.js "$@"
