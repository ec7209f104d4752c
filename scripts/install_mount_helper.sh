#!/bin/sh
# Makes `mount -t fuse.ext4ts|fuseblk.ext4ts` (and fstab lines of those types) run ext4ts.
#
#   install_mount_helper.sh [--list|--uninstall] LAUNCHER
#
# LAUNCHER is the installed `ext4ts` program (absolute path). What it installs (symbolic links;
# cli/mount_helper.ts explains the chain mount(8) -> mount.fuse3 -> ext4ts):
#   - $BIN/ext4ts -> LAUNCHER, where BIN is $EXT4TS_HELPER_BIN (default /usr/local/sbin): mount(8)
#     runs helpers without PATH, so mount.fuse3's /bin/sh finds `ext4ts` only on its default path
#     /usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin. Skipped when LAUNCHER is
#     already in one of those directories.
#   - $SBIN/mount.fuseblk.ext4ts -> mount.fuse3, where SBIN is $EXT4TS_HELPER_SBIN (default /sbin):
#     mount(8) looks there for type fuseblk.ext4ts; mount.fuse3 reads the type from its name.
# --list prints "PATH -> TARGET" for each link without installing; --uninstall removes the links
# that point where they would. A file in the way that is not such a link is never replaced (exit 1).
set -eu

mode=install
case "${1:-}" in
--list | --uninstall)
  mode=${1#--}
  shift
  ;;
esac
if [ $# -ne 1 ] || [ "${1#/}" = "$1" ]; then
  echo "usage: $0 [--list|--uninstall] /ABSOLUTE/PATH/TO/ext4ts" >&2
  exit 2
fi
launcher=$1
bin=${EXT4TS_HELPER_BIN:-/usr/local/sbin}
sbin=${EXT4TS_HELPER_SBIN:-/sbin}

mount_fuse3=
for d in /sbin /usr/sbin /usr/local/sbin /bin /usr/bin; do
  if [ -x "$d/mount.fuse3" ]; then
    mount_fuse3=$d/mount.fuse3
    break
  fi
done
if [ -z "$mount_fuse3" ] && [ "$mode" != uninstall ]; then
  echo "$0: mount.fuse3 not found: install fuse3" >&2
  exit 1
fi

links() {
  case ":/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:" in
  *":$(dirname "$launcher"):"*) ;;
  *) echo "$bin/ext4ts $launcher" ;;
  esac
  echo "$sbin/mount.fuseblk.ext4ts ${mount_fuse3:-mount.fuse3}"
}

status=0
links | while read -r path target; do
  case $mode in
  list) echo "$path -> $target" ;;
  install)
    if [ -L "$path" ] || [ ! -e "$path" ]; then
      mkdir -p "$(dirname "$path")"
      ln -sfn "$target" "$path"
      echo "$path -> $target"
    else
      echo "$0: $path exists and is not a link: not replaced" >&2
      exit 1
    fi
    ;;
  uninstall)
    if [ -L "$path" ] && [ "$(readlink "$path")" = "$target" ]; then
      rm -f "$path"
      echo "removed $path"
    elif [ -L "$path" ] && [ "$(basename "$target")" = mount.fuse3 ] &&
      [ "$(basename "$(readlink "$path")")" = mount.fuse3 ]; then
      rm -f "$path"
      echo "removed $path"
    fi
    ;;
  esac
done || status=$?
exit $status
