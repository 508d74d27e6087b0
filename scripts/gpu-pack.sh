#!/usr/bin/env bash
# Build .gpu/: everything a GPU host without Node.js or network needs to run the benchmark and
# the CLI on WebGPU, for one call from a GPU session:
#   bash .gpu/run-gpu.sh .gpu node .gpu/bench-gpu.cjs            # bench:gpu, JSON in ./bench-gpu.json
#   bash .gpu/run-gpu.sh .gpu node .gpu/cli/cifar.mjs train --backend webgpu ...   (from the project root)
# Contents: node + dawn.node + Vulkan loader/libglvnd (pack-runtime.sh), esbuild bundles of the
# benchmark and the CLI (dawn.node stays outside, loaded from $DAWN_NODE; both xz-compressed in
# bundles.tar.xz, which run-gpu.sh unpacks), sharp's native module, run-gpu.sh and
# reference-pytorch.py; about 35 MB, 54 MB with the dataset, under a 64 MiB carry limit that the
# repository's own files count against too. The CLI
# bundle has no wasm binaries: on the GPU host it is for --backend webgpu.
# With --data ARCHIVE, the dataset archive goes in too (as data.tar.gz), for a training run there:
#   node .gpu/cli/cifar.mjs download --from .gpu/data.tar.gz --dir /tmp/data
# Usage: scripts/gpu-pack.sh [--data ARCHIVE] [OUT_DIR=.gpu]
set -euo pipefail
data=
if [[ ${1:-} == --data ]]; then data=$(realpath "${2:?--data needs an archive}"); shift 2; fi
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
# The bundles travel xz-compressed (7.3 MB → about 1): the carried tree is limited to 64 MiB.
# run-gpu.sh unpacks them where they were.
tar -C "$out" -cJf "$out/bundles.tar.xz" bench-gpu.cjs cli
rm -rf "$out/bench-gpu.cjs" "$out/cli"

echo "== sharp's native module (the CLI bundle's image decoding)"
# sharp's JavaScript is in cifar.mjs; its native module and libvips (16 MB, 6 MB as xz) travel as
# img.tar.xz, which run-gpu.sh unpacks into node_modules/@img next to the bundles.
rm -rf "$out/node_modules"
tar -C node_modules -cJf "$out/img.tar.xz" @img/sharp-linux-x64 @img/sharp-libvips-linux-x64

if [[ -n $data ]]; then echo "== dataset"; cp "$data" "$out/data.tar.gz"; else rm -f "$out/data.tar.gz"; fi

cp "$here/run-gpu.sh" "$here/reference-pytorch.py" "$here/reference-train.py" "$here/best-reference.mjs" "$here/cpuprofile-top.cjs" "$here/train-run.sh" "$out/"
du -sh "$out"
# What a device call carries: the tracked files present in the working tree, the untracked ones git
# does not ignore, and this folder; its limit is 64 MiB. The committed ResNet-18 weights (22.4 MB)
# push the repository plus a dataset pack over it: move them aside for such a call.
# (A tracked file moved aside is listed but missing: du skips it. xargs may run du more than once:
# every total counts.)
tracked=$({ git ls-files -z --cached --others --exclude-standard | xargs -0 du -cb 2>/dev/null || true; } | awk -F'\t' '$2 == "total" { s += $1 } END { print s + 0 }')
total=$(( tracked + $(du -sb "$out" | cut -f1) ))
echo "a device call carries $(( total / 1048576 )) MiB of 64 (repository $(( tracked / 1048576 )), $out $(( $(du -sb "$out" | cut -f1) / 1048576 )))"
if (( total > 64 * 1048576 )); then
  echo "over the limit: e.g. mv models/resnet18/weights-*.bin /tmp/ before the call, git checkout models/resnet18 after it" >&2
fi
echo "run on a GPU host: bash $out/run-gpu.sh $out node $out/bench-gpu.cjs"
