/**
 * Reader benchmark: reading a 1 GiB file and copying out a 20 000-file tree from an image,
 * ext4ts against `debugfs -R dump/rdump` and against the kernel (loop mount) reading the same
 * image. Needs root (loop mount), mkfs.ext4 and debugfs. The image file stays in the host's
 * page cache for everyone (best of three runs), and the kernel's filesystem is mounted afresh
 * for each run so it reads through its own code path instead of its page cache: the numbers
 * compare code paths, not the disk.
 *
 * Usage: deno run -A bench/read.ts [--keep DIR]
 *
 * @module
 */

import { Ext4 } from "../mod.ts";

const ROOT = new URL("..", import.meta.url).pathname;

async function sh(cmd: string): Promise<void> {
  const out = await new Deno.Command("sh", { args: ["-c", cmd], stdout: "null", stderr: "piped" })
    .output();
  if (out.code !== 0) {
    throw new Error(`${cmd}: exit ${out.code}: ${new TextDecoder().decode(out.stderr)}`);
  }
}

async function best(
  label: string,
  fn: () => Promise<void>,
  setup: () => Promise<void> = () => Promise.resolve(),
  runs = 3,
): Promise<number> {
  let min = Infinity;
  for (let i = 0; i < runs; i++) {
    await setup();
    const t0 = performance.now();
    await fn();
    min = Math.min(min, performance.now() - t0);
  }
  console.log(`${label.padEnd(44)} ${(min / 1000).toFixed(3)} s`);
  return min;
}

/** Runs `cmd` against a fresh read-only kernel mount (mount and umount not timed apart). */
async function kernelRun(cmd: string): Promise<void> {
  await sh(`mount -o loop,ro ${img} ${mnt}`);
  try {
    await sh(cmd);
  } finally {
    await sh(`umount ${mnt}`);
  }
}

const dir = await Deno.makeTempDir({ prefix: "ext4ts-bench-" });
const img = `${dir}/bench.img`;
const mnt = `${dir}/mnt`;
await Deno.mkdir(mnt);
try {
  console.log("building the image (1 GiB file + 20 000 files)...");
  await sh(`mkfs.ext4 -q -F -b 4096 ${img} 1600M`);
  await sh(`mount -o loop ${img} ${mnt}`);
  try {
    await sh(`head -c 1073741824 /dev/urandom > ${mnt}/big`);
    await sh(
      `python3 -c "
import os
for d in range(100):
    os.makedirs('${mnt}/tree/d%03d' % d)
    for f in range(200):
        with open('${mnt}/tree/d%03d/f%03d' % (d, f), 'wb') as fh:
            fh.write(os.urandom(100 + (f * 37) % 4000))
"`,
    );
  } finally {
    await sh(`umount ${mnt}`);
  }

  console.log("\n1 GiB file, read sequentially:");
  const ours = await best("ext4ts (library, openFile stream)", async () => {
    const fs = await Ext4.open(img);
    const f = await fs.openFile("/big");
    let n = 0;
    for await (const c of f.readable()) n += c.length;
    if (n !== 1073741824) throw new Error(`read ${n} bytes`);
    await fs.close();
  });
  const cli = await best(
    "ext4ts cat > /dev/null",
    () => sh(`deno run -A ${ROOT}cli/main.ts cat ${img} /big > /dev/null`),
  );
  const dbg = await best(
    "debugfs -R 'dump /big /dev/null'",
    () => sh(`debugfs -R 'dump /big /dev/null' ${img}`),
  );
  const kern = await best(
    "kernel: cat /big > /dev/null (fresh mount)",
    () => kernelRun(`cat ${mnt}/big > /dev/null`),
  );
  console.log(
    `ratios: ext4ts/debugfs ${(ours / dbg).toFixed(2)}, ext4ts/kernel ${
      (ours / kern).toFixed(2)
    }, cli/debugfs ${(cli / dbg).toFixed(2)}`,
  );

  console.log("\n20 000-file tree, copied out to a tmpfs (walk + read + write):");
  const out = `${dir}/tmpfs/out`;
  await Deno.mkdir(`${dir}/tmpfs`);
  await sh(`mount -t tmpfs -o size=512M tmpfs ${dir}/tmpfs`);
  const clean = () => Deno.remove(out, { recursive: true }).catch(() => {});
  const tg = await best(
    "ext4ts get /tree",
    () => sh(`deno run -A ${ROOT}cli/main.ts get ${img} /tree ${out}`),
    clean,
  );
  const tw = await best("ext4ts library walk + read (no writes)", async () => {
    const fs = await Ext4.open(img);
    let files = 0;
    for await (const { stat } of fs.walk("/tree")) {
      if (stat.type === "file") {
        await fs.read(stat.ino, 0, stat.size);
        files++;
      }
    }
    if (files !== 20000) throw new Error(`walked ${files} files`);
    await fs.close();
  });
  const td = await best(
    "debugfs -R 'rdump /tree OUT'",
    () => sh(`debugfs -R 'rdump /tree ${out}' ${img}`),
    () => clean().then(() => Deno.mkdir(out)),
  );
  const tk = await best(
    "kernel: cp -a /tree OUT (fresh mount)",
    () => kernelRun(`cp -a ${mnt}/tree ${out}`),
    clean,
  );
  console.log(
    `ratios: get/debugfs ${(tg / td).toFixed(2)}, get/kernel ${(tg / tk).toFixed(2)}, walk/kernel ${
      (tw / tk).toFixed(2)
    }`,
  );
} finally {
  await sh(`umount ${mnt} 2>/dev/null || true`);
  await sh(`umount ${dir}/tmpfs 2>/dev/null || true`);
  if (!Deno.args.includes("--keep")) await Deno.remove(dir, { recursive: true });
}
