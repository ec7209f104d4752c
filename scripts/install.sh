#!/usr/bin/env bash
# Installs the ext4ts command: one JavaScript bundle of the CLI (every npm package inside) run by
# Deno through a launcher, `PREFIX/bin/ext4ts`, plus its man page and bash/zsh completions
# (scripts/install.ts). Works from any directory and for any user; nothing is fetched at run time.
# Usage: [PREFIX=/usr/local] [DENO=/path/to/deno] bash scripts/install.sh [build|install|uninstall]
set -euo pipefail
# Taken from where the caller stands, before moving to the repository.
export PREFIX=$(realpath -m "${PREFIX:-/usr/local}")
if [ -n "${DENO:-}" ]; then DENO=$(realpath -m "$(command -v "$DENO" || echo "$DENO")"); export DENO; fi
cd "$(dirname "$0")/.."
. scripts/env.sh
if ! command -v deno >/dev/null 2>&1; then
  echo "install: no Deno here: run bash scripts/setup.sh first (it installs the pinned one)" >&2
  exit 1
fi
exec deno run --quiet --allow-all scripts/install.ts "$@"
