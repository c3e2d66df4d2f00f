# Sourced by the entry scripts: installs the npm dependencies when they are missing, or
# older than package-lock.json (a pull that changed them).
# librdkafka is built from source (its prebuilt binaries are not reachable from these
# machines) and linked against the system's libraries; node-gyp uses the local Node
# headers when they exist, so nothing but the npm registry is needed.
export CKJS_LINKING=dynamic
if [ -f /usr/include/node/node.h ]; then export npm_config_nodedir=/usr; fi
if [ ! -f node_modules/@confluentinc/kafka-javascript/build/Release/confluent-kafka-javascript.node ] \
   || [ ! -f node_modules/@confluentinc/kafka-javascript/build/deps/librdkafka.so.1 ] || [ ! -d node_modules/typescript ] \
   || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  for tool in gcc g++ make python3; do
    if ! command -v "$tool" >/dev/null 2>&1; then
      echo "[tally] error: $tool is missing; librdkafka and the native addons are built from source (Debian: apt-get install build-essential python3)" >&2
      exit 1
    fi
  done
  echo "[tally] installing dependencies (builds librdkafka once, about two minutes)" >&2
  # build_from_source: node-pre-gyp would take a prebuilt binary wherever GitHub is
  # reachable; that one has librdkafka linked in statically, and io/native needs its shared
  # library (npm warns that it does not know this setting: node-pre-gyp reads it).
  npm_config_build_from_source=@confluentinc/kafka-javascript npm ci --no-audit --no-fund
fi
