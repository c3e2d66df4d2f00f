#!/usr/bin/env bash
# Builds io/native/*.c (and engine/native/*.c, below) into dist/native/*.node (Node-API, so one build serves every Node
# version of the same ABI). Links the librdkafka that @confluentinc/kafka-javascript built
# (CKJS_LINKING=dynamic leaves librdkafka.so.1 in its build/deps), so the process holds one
# librdkafka; the rpath is relative, so a copied tree (Docker) finds it too.
# Needs gcc and the Node headers: npm_config_nodedir, the headers beside the node binary, or
# node-gyp's download cache, the same places node-gyp looks.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

kafka_package=node_modules/@confluentinc/kafka-javascript
rdkafka_include="$kafka_package/deps/librdkafka/src"
rdkafka_lib="$kafka_package/build/deps"
node_version="$(node -p process.versions.node)"
node_include=""
for candidate in "${npm_config_nodedir:-/nonexistent}/include/node" \
                 "$(dirname "$(dirname "$(readlink -f "$(command -v node)")")")/include/node" \
                 "$HOME/.cache/node-gyp/$node_version/include/node"; do
  if [ -f "$candidate/node_api.h" ]; then node_include="$candidate"; break; fi
done
if [ -z "$node_include" ]; then
  echo "io/native/build.sh: Node headers (node_api.h) not found; set npm_config_nodedir to a Node install with include/node" >&2
  exit 1
fi
if [ ! -f "$rdkafka_include/rdkafka.h" ] || [ ! -f "$rdkafka_lib/librdkafka.so.1" ]; then
  echo "io/native/build.sh: librdkafka of $kafka_package not found; run npm ci with CKJS_LINKING=dynamic (scripts/install.sh)" >&2
  exit 1
fi

mkdir -p dist/native
for source in io/native/*.c; do
  name="$(basename "$source" .c)"
  target="dist/native/$name.node"
  fresh=1
  for input in "$source" "$0" io/native/*.h; do [ "$target" -nt "$input" ] || fresh=0; done
  if [ "$fresh" = 1 ]; then continue; fi
  gcc -O2 -Wall -Wextra -Werror -std=c11 -shared -fPIC -fvisibility=hidden \
    -isystem "$node_include" -isystem "$rdkafka_include" "$source" \
    -L"$rdkafka_lib" -l:librdkafka.so.1 \
    -Wl,-rpath,"\$ORIGIN/../../$rdkafka_lib" \
    -o "$target"
done

# The balance engine's native core (engine/native): no librdkafka; x86-64 only (its seqlock
# relies on x86-64 store ordering), elsewhere the engine runs in TypeScript.
if [ "$(uname -m)" = x86_64 ]; then
  for source in engine/native/*.c; do
    name="$(basename "$source" .c)"
    target="dist/native/$name.node"
    if [ "$target" -nt "$source" ] && [ "$target" -nt "$0" ] && [ "$target" -nt io/native/napi_common.h ]; then continue; fi
    gcc -O2 -Wall -Wextra -Werror -std=gnu11 -shared -fPIC -fvisibility=hidden \
      -isystem "$node_include" "$source" -o "$target"
  done
fi
