#!/usr/bin/env bash
# Installs what ext4ts needs on a Debian machine, idempotently: Deno (pinned in
# tools/deno/package-lock.json, from the npm registry); into this user's Deno cache the npm
# packages deno.lock pins (so no run of `deno task ext4ts` downloads anything) and the esbuild
# `deno bundle` runs (for scripts/install.sh); Debian's e2fsprogs, fuse3, fuse2fs, dosfstools and
# the tools the tests use (fdisk's sfdisk for partitioned images, zsh and man-db for the
# completion and man page tests). Needs root for apt-get.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
for pair in mkfs.ext4:e2fsprogs fusermount3:fuse3 fuse2fs:fuse2fs mkfs.vfat:dosfstools losetup:mount setfacl:acl setfattr:attr python3:python3 bzip2:bzip2 gzip:gzip cmp:diffutils sfdisk:fdisk zsh:zsh man:man-db; do
  tool=${pair%%:*} pkg=${pair##*:}
  command -v "$tool" >/dev/null 2>&1 || [ -x "/usr/sbin/$tool" ] || [ -x "/sbin/$tool" ] || need_apt+=("$pkg")
done
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: installing ${need_apt[*]}" >&2
  if [ "$(id -u)" != 0 ]; then
    echo "setup: need root to install ${need_apt[*]}" >&2
    exit 1
  fi
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >&2
fi

if ! command -v npm >/dev/null 2>&1; then
  echo "setup: installing nodejs and npm (for the Deno package)" >&2
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >&2
fi
deno_bin=tools/deno/node_modules/@deno/linux-x64-glibc/deno
if [ "$(uname -m)" != x86_64 ]; then
  echo "setup: the pinned Deno is the Linux x86-64 build; this machine is $(uname -m)" >&2
  exit 1
fi
if [ ! -x "$deno_bin" ]; then
  echo "setup: installing Deno from the npm registry" >&2
  rm -rf tools/deno/node_modules
  (cd tools/deno && npm ci --no-audit --no-fund --loglevel=error >&2)
fi
"$deno_bin" --version >/dev/null
# Every npm package deno.lock pins, into the Deno cache now rather than on a first run (where
# Deno would print its coloured "Download https://…" lines amid ext4ts' output). --frozen: the
# lock file is the truth; a dependency missing from it is an error, not a silent update.
DENO_NO_UPDATE_CHECK=1 "$deno_bin" install --frozen --quiet >&2
# And the esbuild that `deno bundle` runs (Deno fetches it from the npm registry on first use), so
# scripts/install.sh needs no network after set-up.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo 'export {};' >"$tmp/empty.js"
DENO_NO_UPDATE_CHECK=1 "$deno_bin" bundle --quiet --no-config --no-lock --output "$tmp/out.js" "$tmp/empty.js" >&2
