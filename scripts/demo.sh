#!/usr/bin/env bash
# Sets up ext4ts and shows it on a demo image it makes (no root needed after set-up).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. scripts/env.sh
dir=.work/demo
mkdir -p "$dir/tree/docs"
printf 'Hello from ext4ts!\n' >"$dir/tree/hello.txt"
printf 'A file in a subdirectory.\n' >"$dir/tree/docs/readme.txt"
ln -sf hello.txt "$dir/tree/link-to-hello"
rm -f "$dir/demo.img"
mkfs.ext4 -q -F -L ext4ts-demo -d "$dir/tree" "$dir/demo.img" 32M >/dev/null
echo "\$ ext4ts probe $dir/demo.img"
deno task -q ext4ts probe "$dir/demo.img"
echo
echo "\$ ext4ts ls -l $dir/demo.img /"
deno task -q ext4ts ls -l "$dir/demo.img" /
echo
echo "\$ ext4ts cat $dir/demo.img /docs/readme.txt"
deno task -q ext4ts cat "$dir/demo.img" /docs/readme.txt
echo
echo "\$ ext4ts put $dir/demo.img README.md /docs/README.md && ext4ts ls -l $dir/demo.img /docs"
deno task -q ext4ts put "$dir/demo.img" README.md /docs/README.md
deno task -q ext4ts ls -l "$dir/demo.img" /docs
echo
echo "\$ e2fsck -fn $dir/demo.img"
e2fsck -fn "$dir/demo.img"
