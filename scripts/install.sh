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
deno run --quiet --allow-all scripts/install.ts "$@"
# mount(8)'s helper links (scripts/install_mount_helper.sh), so that `mount -t fuse.ext4ts` and
# fstab lines work. They are system-wide, so by default (EXT4TS_MOUNT_HELPER=auto) they are made
# only as root for a launcher on mount.fuse3's default path; a launcher elsewhere gets the command
# to run by hand. EXT4TS_MOUNT_HELPER=yes makes them anyway, =no never (the link directories:
# EXT4TS_HELPER_BIN and EXT4TS_HELPER_SBIN, see that script).
launcher="$PREFIX/bin/ext4ts"
helper=${EXT4TS_MOUNT_HELPER:-auto}
if [ "$helper" = auto ]; then
  case "$PREFIX/bin" in
  /usr/local/sbin | /usr/local/bin | /usr/sbin | /usr/bin | /sbin | /bin)
    if [ "$(id -u)" = 0 ]; then helper=yes; else helper=hint; fi
    ;;
  *) helper=hint ;;
  esac
fi
case "${1:-install}:$helper" in
install:yes) sh scripts/install_mount_helper.sh "$launcher" ;;
uninstall:yes) sh scripts/install_mount_helper.sh --uninstall "$launcher" ;;
install:hint)
  echo "for mount -t fuse.ext4ts and fstab lines, run as root: sh scripts/install_mount_helper.sh $launcher"
  ;;
esac
