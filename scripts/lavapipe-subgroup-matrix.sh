#!/usr/bin/env bash
# A CPU Vulkan driver with subgroup matrices, for testing the float16 tensor-core kernels without
# a GPU: lavapipe from Debian sid's Mesa (VK_KHR_cooperative_matrix, 8 x 8 x 8 float16 matrices,
# since Mesa 25.1; bookworm-backports has 25.0), unpacked into a folder, not installed, with the C
# library and LLVM it was built against. It prints the path of a `node` wrapper that runs Node.js
# on that C library with that driver:
#
#   node=$(bash scripts/lavapipe-subgroup-matrix.sh)      # or: ... DIR
#   CIFAR_WEBGPU_MATMUL=tensor-cores "$node" bin/cifar eval --backend webgpu --limit 256
#   CIFAR_SUBGROUP_MATRIX_NODE="$node" npm test         # the tensor-core tests run instead of skipping
#
# DIR defaults to ~/.cache/cifar/lavapipe-sid; a DIR that already works is reused. Progress goes
# to stderr; exits 1, saying why, when the driver cannot be fetched or offers no subgroup matrices.
# Needs Debian's apt (the packages come from deb.debian.org) and this repository's node_modules.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
dir="${1:-${XDG_CACHE_HOME:-$HOME/.cache}/cifar/lavapipe-sid}"
mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"
say() { echo "lavapipe-subgroup-matrix: $*" >&2; }

# The check: Dawn, on this driver, offers subgroup matrices (an experimental feature: unsafe APIs allowed).
check() {
  (cd "$repo" && "$dir/node" --input-type=module -e "
    import { createRequire } from 'node:module';
    const { create, globals } = createRequire(process.cwd() + '/package.json')('webgpu');
    Object.assign(globalThis, globals);
    const adapter = await create(['enable-dawn-features=allow_unsafe_apis']).requestAdapter();
    const ok = adapter !== null && adapter.features.has('chromium-experimental-subgroup-matrix');
    console.log(ok ? 'ok ' + adapter.info.description : 'no subgroup matrices on ' + (adapter?.info.description ?? 'no adapter'));
    process.exit(ok ? 0 : 1);" 2>/dev/null | tail -1)
}

if [ -x "$dir/node" ] && verdict="$(check)"; then
  say "reusing $dir ($verdict)"
  echo "$dir/node"
  exit 0
fi

# About 75 MB of packages, 335 MB unpacked: ask for 1 GB, so that a nearly full disk is left alone.
free_kb="$(df -Pk "$dir" | awk 'NR == 2 { print $4 }')"
if [ "${free_kb:-0}" -lt 1000000 ]; then
  say "needs 1 GB free in $dir ($((${free_kb:-0} / 1024)) MB free)"
  exit 1
fi

apt_opts=(-o "Dir::Etc::sourcelist=$dir/sources.list" -o Dir::Etc::sourceparts=- -o "Dir::State::Lists=$dir/lists"
  -o "Dir::Cache=$dir/cache" -o Debug::NoLocking=1 -o APT::Sandbox::User=root)
echo 'deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian sid main' > "$dir/sources.list"
mkdir -p "$dir/lists/partial" "$dir/cache/archives/partial" "$dir/debs"
say "reading Debian sid's package lists"
apt-get "${apt_opts[@]}" update -qq >&2
# The driver and everything it needs, down to the C library (virtual packages left out).
packages="$(apt-cache "${apt_opts[@]}" depends --recurse --no-recommends --no-suggests --no-conflicts --no-breaks \
  --no-replaces --no-enhances mesa-vulkan-drivers libvulkan1 libc6 | grep -E '^[a-z0-9]' | sort -u)"
say "downloading $(echo "$packages" | wc -l) packages (mesa-vulkan-drivers $(apt-cache "${apt_opts[@]}" show mesa-vulkan-drivers | sed -n 's/^Version: //p' | head -1))"
(cd "$dir/debs" && rm -f ./*.deb && apt-get "${apt_opts[@]}" download $packages >/dev/null 2>&1)
rm -rf "$dir/root"
for deb in "$dir"/debs/*.deb; do dpkg -x "$deb" "$dir/root"; done

lib="$dir/root/usr/lib/x86_64-linux-gnu"
[ -e "$lib/libvulkan_lvp.so" ] || { say "no libvulkan_lvp.so in sid's mesa-vulkan-drivers"; exit 1; }
cat > "$dir/lvp.json" <<EOF
{ "file_format_version": "1.0.1", "ICD": { "library_path": "$lib/libvulkan_lvp.so", "api_version": "1.4.0" } }
EOF
cat > "$dir/node" <<EOF
#!/bin/sh
# Node.js on Debian sid's C library, with only sid's lavapipe as its Vulkan driver
# (written by scripts/lavapipe-subgroup-matrix.sh). Its own child processes run without it.
# lavapipe at its full SIMD width (256 bits): subgroups of 8, the only size it offers 8 x 8 x 8
# subgroup matrices for (at LP_NATIVE_VECTOR_WIDTH=128, subgroups of 4, it offers none).
exec env VK_ICD_FILENAMES="$dir/lvp.json" VK_DRIVER_FILES="$dir/lvp.json" LP_NATIVE_VECTOR_WIDTH=256 \\
  "$lib/ld-linux-x86-64.so.2" --library-path "$lib" "\$(command -v node)" "\$@"
EOF
chmod +x "$dir/node"
rm -rf "$dir/debs" "$dir/cache" "$dir/lists"
if ! verdict="$(check)"; then
  say "${verdict:-the node wrapper did not start}"
  exit 1
fi
say "$verdict"
echo "$dir/node"
