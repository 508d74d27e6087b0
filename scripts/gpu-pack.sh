#!/usr/bin/env bash
# Build .gpu/: everything a GPU host without Node.js or network needs to run the benchmark and
# the CLI on WebGPU, for one call from a GPU session:
#   bash .gpu/run-gpu.sh .gpu node .gpu/bench-gpu.cjs            # bench:gpu, JSON in ./bench-gpu.json
#   bash .gpu/run-gpu.sh .gpu node .gpu/cli/cifar.mjs train --backend webgpu ...   (from the project root)
# Contents: node + dawn.node + Vulkan loader/libglvnd (pack-runtime.sh), esbuild bundles of the
# benchmark and the CLI (dawn.node stays outside, loaded from $DAWN_NODE), sharp's native
# module, run-gpu.sh and reference-pytorch.py; about 50 MB, under a 64 MiB carry limit. The CLI
# bundle has no wasm binaries: on the GPU host it is for --backend webgpu.
# Usage: scripts/gpu-pack.sh [OUT_DIR=.gpu]
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-.gpu}
here=scripts/gpu
mkdir -p "$out"

echo "== build"
npm run build --silent

echo "== runtime (node, dawn.node, Vulkan loader)"
bash "$here/pack-runtime.sh" "$out" . >/dev/null

echo "== bundles"
# CommonJS has no import.meta: give the bundled code the bundle's own file URL instead, so that
# createRequire() and the worker URL (loader-worker.js next to the bundle) still resolve.
cjs=(--bundle --minify --platform=node --target=node20 --format=cjs --log-level=warning
  --define:import.meta.url=__bundle_url --banner:js="const __bundle_url = require('url').pathToFileURL(__filename).href;"
  --external:webgpu --external:@tensorflow/tfjs-node --external:@tensorflow/tfjs-node-gpu)
npx esbuild scripts/bench-gpu.mjs "${cjs[@]}" --alias:sharp=./$here/sharp-stub.cjs --outfile="$out/bench-gpu.cjs"
# The CLI awaits at top level, which only ESM allows. It sits two folders below the project root,
# as dist/cli/main.js does, so that it finds package.json, models/ and configs/ there; its batch
# loader worker goes next to it.
npx esbuild dist/train/loader-worker.js "${cjs[@]}" --outfile="$out/cli/loader-worker.js"
npx esbuild dist/cli/main.js --bundle --minify --platform=node --target=node20 --format=esm --log-level=warning \
  --banner:js="import { createRequire as __createRequire } from 'node:module'; const require = __createRequire(import.meta.url);" \
  --external:webgpu --external:@tensorflow/tfjs-node --external:@tensorflow/tfjs-node-gpu --outfile="$out/cli/cifar.mjs"
# .js files next to the bundles are CommonJS whatever the project's package.json says.
echo '{ "type": "commonjs" }' > "$out/package.json"

echo "== sharp's native module (the CLI bundle's image decoding)"
# sharp's JavaScript is in cifar.mjs; its native module and libvips (16 MB) are loaded from here.
mkdir -p "$out/node_modules/@img"
for p in sharp-linux-x64 sharp-libvips-linux-x64; do
  [[ -d node_modules/@img/$p ]] && cp -r "node_modules/@img/$p" "$out/node_modules/@img/"
done

cp "$here/run-gpu.sh" "$here/reference-pytorch.py" "$out/"
du -sh "$out"
echo "run on a GPU host: bash $out/run-gpu.sh $out node $out/bench-gpu.cjs"
