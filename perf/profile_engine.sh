#!/usr/bin/env bash
# A CPU profile of the engine's hot loop: runs bench/engine.bench.js under --cpu-prof and
# writes the .cpuprofile into results/profile/ (open it in Chrome DevTools' Performance tab or
# speedscope). With --trace-gc the GC trace goes beside it. Arguments pass to the bench
# (for example --smoke).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
out="results/profile/$(date +%Y%m%d-%H%M%S)"
mkdir -p "$out"
npm run -s build
node --cpu-prof --cpu-prof-dir="$out" --trace-gc dist/bench/engine.bench.js "$@" > "$out/bench-and-gc.log"
tail -1 "$out/bench-and-gc.log"
echo "profile: $(ls "$out"/*.cpuprofile)" >&2
echo "gc trace and bench output: $out/bench-and-gc.log" >&2
