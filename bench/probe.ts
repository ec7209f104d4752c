/**
 * Benchmarks of the foundation: crc32c throughput, and probing a 16 TiB sparse image
 * against `dumpe2fs -h` on the same image.
 *
 * @module
 */

import { crc32c } from "../lib/ondisk/checksum.ts";
import { openBlockDevice } from "../ffi/file_device.ts";
import { probeDevice } from "../lib/report/probe.ts";
import { type BenchRow, medianMs, sh } from "./lib.ts";

/** Runs the foundation benchmarks. */
export async function benchProbe(): Promise<BenchRow[]> {
  const rows: BenchRow[] = [];
  const data = new Uint8Array(64 * 2 ** 20).map((_, i) => i * 31);
  const crcMs = await medianMs(() => crc32c(0xffffffff, data), 5);
  rows.push({
    name: "crc32c 64 MiB",
    ext4ts: crcMs,
    peers: {},
    note: `${(data.length / 2 ** 20 / (crcMs / 1000)).toFixed(0)} MiB/s`,
  });

  const dir = await Deno.makeTempDir({ dir: "/dev/shm", prefix: "ext4ts-bench-" });
  try {
    const path = `${dir}/big.img`;
    const f = await Deno.create(path);
    await f.truncate(16 * 2 ** 40);
    f.close();
    await sh("mkfs.ext4", ["-q", "-F", "-E", "lazy_itable_init=1,nodiscard", path]);
    const inProcess = await medianMs(async () => {
      const dev = openBlockDevice(path);
      await probeDevice(dev);
      await dev.close();
    });
    const dumpe2fs = await medianMs(() => sh("dumpe2fs", ["-h", path]));
    const cli = await medianMs(
      () =>
        sh(Deno.execPath(), [
          "run",
          "-A",
          new URL("../cli/main.ts", import.meta.url).pathname,
          "probe",
          path,
        ]),
      3,
    );
    // Without -h dumpe2fs also reads every bitmap: what a probe that walked the disk would cost.
    const allGroups = await medianMs(() => sh("dumpe2fs", [path]).catch(() => ""), 1);
    rows.push({
      name: "probe 16 TiB (library call)",
      ext4ts: inProcess,
      peers: { "dumpe2fs -h": dumpe2fs, "dumpe2fs (groups)": allGroups },
      note: "reads the superblock, 8 MiB of descriptors, the journal superblock",
    });
    rows.push({
      name: "probe 16 TiB (process incl. Deno start)",
      ext4ts: cli,
      peers: { "dumpe2fs -h": dumpe2fs },
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
  return rows;
}
