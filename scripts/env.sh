# Sourced by the scripts: puts the pinned Deno and the sbin tools on PATH.
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PATH="$root/tools/deno/node_modules/@deno/linux-x64-glibc:$PATH:/usr/sbin:/sbin"
export DENO_NO_UPDATE_CHECK=1
