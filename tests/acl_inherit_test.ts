/**
 * Default-ACL inheritance on create (lib/ext4/acl.ts, newInode in lib/ext4/namei.ts):
 * the masking rules against hand-worked cases, then the same operations done through `Ext4`
 * and by the kernel (python3 with umask 0 on a loop mount of an identical image) under
 * directories with and without default ACLs: the modes and ACL xattrs of every new inode are
 * byte-identical, e2fsck -fn is clean. And `ext4ts put` into a directory with a default ACL
 * keeps the host's own ACLs (none where the host has none).
 */

import assert from "node:assert/strict";
import { Ext4 } from "../ffi/open_filesystem.ts";
import { type AclEntry, AclTag, aclToXattr } from "../lib/ondisk/acl.ts";
import { aclCreateMasq, inheritAcls } from "../lib/ext4/acl.ts";
import { CorruptError } from "../lib/errors.ts";
import { run, runCli, runOk, tempDir, testWith, withKernelMount } from "./helpers.ts";
import { fsck, IMAGE_TOOLS, LAYOUTS, mkfsImage } from "./write_fixtures.ts";

const U = 0xffffffff;
const KERNEL = [...IMAGE_TOOLS, "root", "loop", "kernel-ext4", "python3", "debugfs"];

/** Entries from [tag, perm, id?] triples. */
function acl(list: [number, number, number?][]): AclEntry[] {
  return list.map(([tag, perm, id]) => ({ tag, perm, id: id ?? U }));
}

function hex(b: Uint8Array): string {
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

const { USER_OBJ, USER, GROUP_OBJ, GROUP, MASK, OTHER } = AclTag;

Deno.test("aclCreateMasq: owner, mask (or owning group) and other masked both ways", () => {
  const named = acl([[USER_OBJ, 7], [USER, 7, 1000], [GROUP_OBJ, 5], [GROUP, 6, 2000], [
    MASK,
    7,
  ], [OTHER, 5]]);
  let r = aclCreateMasq(named, 0o100644);
  assert.equal(r.mode, 0o100644);
  assert.deepEqual(r.acl.map((e) => e.perm), [6, 7, 5, 6, 4, 4]); // named entries untouched
  assert.equal(r.equivalent, false);
  assert.deepEqual(named.map((e) => e.perm), [7, 7, 5, 6, 7, 5], "the input is not changed");
  r = aclCreateMasq(named, 0o104777); // special bits kept, group bits from the mask
  assert.equal(r.mode, 0o104775);
  // Without a mask the owning group entry is masked.
  r = aclCreateMasq(acl([[USER_OBJ, 6], [GROUP_OBJ, 4], [OTHER, 0]]), 0o40777);
  assert.deepEqual([r.mode, r.acl.map((e) => e.perm), r.equivalent], [
    0o40640,
    [6, 4, 0],
    true,
  ]);
  // A mask alone makes the ACL say more than the mode.
  r = aclCreateMasq(acl([[USER_OBJ, 6], [GROUP_OBJ, 4], [MASK, 5], [OTHER, 0]]), 0o100600);
  assert.deepEqual([r.mode, r.acl.map((e) => e.perm), r.equivalent], [
    0o100600,
    [6, 4, 0, 0],
    false,
  ]);
  assert.throws(() => aclCreateMasq(acl([[USER_OBJ, 6], [OTHER, 0]]), 0o644), CorruptError);
});

Deno.test("inheritAcls: directories keep the default ACL, symlinks get nothing", () => {
  const def = acl([[USER_OBJ, 7], [USER, 5, 7], [GROUP_OBJ, 5], [MASK, 5], [OTHER, 0]]);
  const d = inheritAcls(def, 0o40755)!;
  assert.equal(d.default, def);
  assert.deepEqual(d.access?.map((e) => e.perm), [7, 5, 5, 5, 0]);
  const f = inheritAcls(def, 0o100666)!;
  assert.equal(f.default, null);
  assert.equal(f.mode, 0o100640);
  assert.equal(inheritAcls(def, 0o120777), null);
  assert.equal(inheritAcls(null, 0o100644), null);
  const fifo = inheritAcls(acl([[USER_OBJ, 7], [GROUP_OBJ, 0], [OTHER, 0]]), 0o10666)!;
  assert.deepEqual([fifo.mode, fifo.access, fifo.default], [0o10600, null, null]);
});

/** Default ACLs set on the top directories, in the kernel's xattr format. */
const DEFAULTS: Record<string, Uint8Array> = {
  // Named entries and a mask.
  named: aclToXattr(acl([[USER_OBJ, 7], [USER, 7, 1000], [GROUP_OBJ, 5], [GROUP, 6, 2000], [
    MASK,
    7,
  ], [OTHER, 5]])),
  // A mask without named entries: still more than a mode.
  mask: aclToXattr(acl([[USER_OBJ, 6], [GROUP_OBJ, 4], [MASK, 5], [OTHER, 0]])),
  // No mask: equivalent to a mode, so only modes change (no access ACL stored).
  plain: aclToXattr(acl([[USER_OBJ, 7], [GROUP_OBJ, 5], [OTHER, 0]])),
};

/** One create: [kind, path, mode]. */
type Op = ["mkdir" | "file" | "data" | "fifo" | "chr" | "sock" | "symlink", string, number];

/** The contents of a "data" file: small enough for inline data, or just too big with ACLs. */
function contents(path: string): Uint8Array {
  const n = path.endsWith("70") ? 70 : 100;
  return Uint8Array.from({ length: n }, (_, i) => (i * 7 + n) & 0xff);
}

function operations(): Op[] {
  const tops = [...Object.keys(DEFAULTS), "none"]; // "none": no default ACL
  const ops: Op[] = tops.map((top): Op => ["mkdir", `/${top}`, 0o755]);
  const under: Op[] = [];
  for (const top of tops) {
    const t = `/${top}`;
    under.push(
      ["file", `${t}/f644`, 0o644],
      ["file", `${t}/f600`, 0o600],
      ["file", `${t}/f777`, 0o777],
      ["file", `${t}/f4755`, 0o4755],
      ["data", `${t}/data70`, 0o644],
      ["data", `${t}/d100`, 0o640],
      ["mkdir", `${t}/d`, 0o777],
      ["mkdir", `${t}/d/e`, 0o750],
      ["file", `${t}/d/e/g`, 0o666],
      ["mkdir", `${t}/d/e/h`, 0o1777],
      ["fifo", `${t}/fifo`, 0o666],
      ["chr", `${t}/d/null`, 0o620],
      ["sock", `${t}/d/e/sock`, 0o755],
      ["symlink", `${t}/link`, 0o777],
    );
  }
  return [...ops, ...under];
}

/** The kernel doing `ops` (after setting the default ACLs) on the image mounted at `mnt`. */
async function kernelCreate(mnt: string, ops: Op[]): Promise<void> {
  const script = `
import os, sys, json, stat
os.umask(0)
root = sys.argv[1]
defaults = json.loads(sys.argv[2])
for kind, path, mode in json.loads(sys.argv[3]):
    p = root + path
    if kind == "mkdir":
        os.mkdir(p, mode)
        top = path[1:]
        if top in defaults: os.setxattr(p, "system.posix_acl_default", bytes.fromhex(defaults[top]))
    elif kind == "file": os.close(os.open(p, os.O_CREAT | os.O_EXCL | os.O_WRONLY, mode))
    elif kind == "data":
        n = 70 if path.endswith("70") else 100
        fd = os.open(p, os.O_CREAT | os.O_EXCL | os.O_WRONLY, mode)
        os.write(fd, bytes((i * 7 + n) & 0xff for i in range(n)))
        os.close(fd)
    elif kind == "fifo": os.mkfifo(p, mode)
    elif kind == "chr": os.mknod(p, stat.S_IFCHR | mode, os.makedev(1, 3))
    elif kind == "sock": os.mknod(p, stat.S_IFSOCK | mode)
    elif kind == "symlink": os.symlink("target", p)
`;
  const defaults = Object.fromEntries(Object.entries(DEFAULTS).map(([k, v]) => [k, hex(v)]));
  await runOk("python3", ["-c", script, mnt, JSON.stringify(defaults), JSON.stringify(ops)]);
}

/** The same through `Ext4`. */
async function ourCreate(fs: Ext4, ops: Op[]): Promise<void> {
  for (const [kind, path, mode] of ops) {
    if (kind === "mkdir") {
      await fs.mkdir(path, { mode });
      const def = DEFAULTS[path.slice(1)];
      if (def) await fs.setXattr(path, "system.posix_acl_default", def);
    } else if (kind === "file") await fs.writeFile(path, new Uint8Array(0), { mode });
    else if (kind === "data") await fs.writeFile(path, contents(path), { mode });
    else if (kind === "fifo") await fs.mknod(path, 0o010000 | mode);
    else if (kind === "chr") await fs.mknod(path, 0o020000 | mode, { major: 1, minor: 3 });
    else if (kind === "sock") await fs.mknod(path, 0o140000 | mode);
    else await fs.symlink("target", path);
  }
}

type Dump = Record<
  string,
  { mode: number; access: string | null; default: string | null; data?: string }
>;

/** Mode and ACL xattrs (getxattr's bytes, hex) of each path, as the kernel shows them. */
async function kernelDump(root: string, paths: string[]): Promise<Dump> {
  const script = `
import os, sys, json, stat
root = sys.argv[1]
out = {}
def get(p, n):
    try: return os.getxattr(p, n, follow_symlinks=False).hex()
    except OSError: return None
for path in json.loads(sys.argv[2]):
    p = root + path
    st = os.lstat(p)
    out[path] = {"mode": st.st_mode, "access": get(p, "system.posix_acl_access"),
                 "default": get(p, "system.posix_acl_default")}
    if stat.S_ISREG(st.st_mode): out[path]["data"] = open(p, "rb").read().hex()
print(json.dumps(out))
`;
  const r = await run("python3", ["-c", script, root, JSON.stringify(paths)]);
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout);
}

/** The same read through `fs`. */
async function ourDump(fs: Ext4, paths: string[]): Promise<Dump> {
  const out: Dump = {};
  for (const path of paths) {
    const names = await fs.listXattr(path);
    const get = async (n: string) => names.includes(n) ? hex(await fs.getXattr(path, n)) : null;
    const st = await fs.lstat(path);
    out[path] = {
      mode: st.mode,
      access: await get("system.posix_acl_access"),
      default: await get("system.posix_acl_default"),
    };
    if (st.type === "file") out[path].data = hex(await fs.readFile(path));
  }
  return out;
}

const INHERIT_LAYOUTS = [
  { layout: LAYOUTS.find((l) => l.name === "ext4")!, extra: [] as string[] },
  { layout: LAYOUTS.find((l) => l.name === "ext4-inline_data")!, extra: [] },
  // 128-byte inodes: every ACL goes to an xattr block (shared between equal sets).
  { layout: LAYOUTS.find((l) => l.name === "ext2")!, extra: ["-I", "128"] },
];

for (const { layout, extra } of INHERIT_LAYOUTS) {
  testWith(
    `default ACLs are inherited as the kernel does on ${layout.name}${extra.join("")}`,
    KERNEL,
    async () => {
      await using dir = await tempDir();
      const image = await mkfsImage(dir.path, layout, extra);
      const theirs = `${dir.path}/kernel.img`;
      const ours = `${dir.path}/ours.img`;
      await Deno.writeFile(theirs, image);
      await Deno.writeFile(ours, image);
      const ops = operations();
      const paths = ops.map(([, p]) => p);
      const expected = await withKernelMount(theirs, async (mnt) => {
        await kernelCreate(mnt, ops);
        return await kernelDump(mnt, paths);
      });
      // The kernel's own behaviour, so the comparison means something.
      assert.equal(expected["/named/f644"].mode, 0o100644);
      assert.ok(expected["/named/f644"].access && !expected["/named/f644"].default);
      assert.ok(expected["/named/d/e"].access && expected["/named/d/e"].default);
      assert.ok(expected["/mask/fifo"].access);
      assert.deepEqual(
        [expected["/plain/f777"].mode, expected["/plain/f777"].access],
        [0o100750, null],
      );
      assert.equal(expected["/none/f777"].mode, 0o100777);
      assert.equal(expected["/named/link"].access, null);

      const fs = await Ext4.open(ours, { readOnly: false });
      try {
        await ourCreate(fs, ops);
        assert.deepEqual(await ourDump(fs, paths), expected, "read back through the same Ext4");
      } finally {
        await fs.close();
      }
      const checked = await fsck(dir.path, await Deno.readFile(ours));
      assert.equal(checked.code, 0, checked.output);
      const seen = await withKernelMount(ours, (mnt) => kernelDump(mnt, paths), {
        readOnly: true,
      });
      assert.deepEqual(seen, expected, "what the kernel reads from our image");
      // Inline or not, as the kernel decided with the inherited ACLs in the inode body.
      const inline = async (img: string) => {
        const out: Record<string, boolean> = {};
        for (const [kind, path] of ops) {
          if (kind !== "mkdir" && kind !== "data") continue;
          const r = await runOk("debugfs", ["-R", `stat ${path}`, img]);
          const flags = parseInt(/Flags: (0x[0-9a-f]+)/.exec(r)?.[1] ?? "NaN", 16);
          assert.ok(!isNaN(flags), r);
          out[path] = (flags & 0x10000000) !== 0;
        }
        return out;
      };
      const kernelInline = await inline(theirs);
      if (layout.name.includes("inline")) {
        // Inherited ACLs leave /mask/d no room for system.data, /named/d (one ACL in the
        // block) still some; a 100-byte file is inline only without an access ACL.
        assert.deepEqual(
          [kernelInline["/mask/d"], kernelInline["/named/d"], kernelInline["/named/d100"]],
          [false, true, false],
        );
        assert.deepEqual([kernelInline["/plain/d100"], kernelInline["/none/d/e"]], [true, true]);
      }
      assert.deepEqual(await inline(ours), kernelInline);
    },
  );
}

testWith(
  "ext4ts put into a directory with a default ACL keeps the host's own ACLs",
  [...KERNEL, "setfacl"],
  async () => {
    await using dir = await tempDir();
    const host = `${dir.path}/host`;
    await Deno.mkdir(`${host}/sub`, { recursive: true });
    await Deno.writeFile(`${host}/plain`, new Uint8Array([1]));
    await Deno.chmod(`${host}/plain`, 0o640);
    await Deno.writeFile(`${host}/withacl`, new Uint8Array(0));
    await Deno.chmod(`${host}/withacl`, 0o600);
    await runOk("setfacl", ["-m", "u:1000:r--", `${host}/withacl`]);
    await runOk("setfacl", ["-d", "-m", "u:1001:rwx", `${host}/sub`]);
    await Deno.writeFile(`${host}/sub/inner`, new Uint8Array(0));
    await runOk("setfacl", ["-b", `${host}/sub/inner`]); // no ACL, though sub has a default
    await Deno.chmod(`${host}/sub/inner`, 0o644);
    await Deno.chmod(`${host}/sub`, 0o711);
    await Deno.chmod(host, 0o755);
    const rel = ["", "/plain", "/withacl", "/sub", "/sub/inner"];
    const hostDump = await kernelDump(host, rel);
    assert.equal(hostDump["/plain"].access, null, "the host file has no ACL");
    assert.ok(hostDump["/withacl"].access && hostDump["/sub"].default);
    assert.equal(hostDump["/sub/inner"].access, null);

    const img = `${dir.path}/fs.img`;
    await Deno.writeFile(img, await mkfsImage(dir.path, LAYOUTS.find((l) => l.name === "ext4")!));
    {
      const fs = await Ext4.open(img, { readOnly: false });
      try {
        await fs.mkdir("/dst", { mode: 0o755 });
        await fs.setXattr("/dst", "system.posix_acl_default", DEFAULTS.named);
        // The default ACL works for ordinary creates in the same image.
        await fs.writeFile("/dst/made", new Uint8Array(0), { mode: 0o644 });
        assert.ok((await fs.listXattr("/dst/made")).includes("system.posix_acl_access"));
      } finally {
        await fs.close();
      }
    }
    const r = await runCli(["put", img, host, "/dst/host"]);
    assert.equal(r.code, 0, r.stderr);
    const checked = await fsck(dir.path, await Deno.readFile(img));
    assert.equal(checked.code, 0, checked.output);
    const inImage = rel.map((p) => `/dst/host${p}`);
    const fromKernel = await withKernelMount(img, (mnt) => kernelDump(mnt, inImage), {
      readOnly: true,
    });
    const fs = await Ext4.open(img);
    let fromUs: Dump;
    try {
      fromUs = await ourDump(fs, inImage);
    } finally {
      await fs.close();
    }
    const rekey = (d: Dump) => Object.fromEntries(rel.map((p) => [p, d[`/dst/host${p}`]]));
    assert.deepEqual(rekey(fromKernel), hostDump);
    assert.deepEqual(rekey(fromUs), hostDump);
  },
);

testWith(
  "a default ACL the kernel cannot use (no owning group) refuses the create, as the kernel's EIO",
  [...KERNEL],
  async () => {
    await using dir = await tempDir();
    const img = `${dir.path}/fs.img`;
    await Deno.writeFile(img, await mkfsImage(dir.path, LAYOUTS.find((l) => l.name === "ext4")!));
    await runOk("debugfs", ["-w", "-R", "mkdir /bad", img]);
    // Stored raw (ext4's on-disk format): owner rwx, other r, no owning group entry.
    const bad = `${dir.path}/acl.bin`;
    await Deno.writeFile(bad, new Uint8Array([1, 0, 0, 0, 1, 0, 7, 0, 0x20, 0, 4, 0]));
    await runOk("debugfs", ["-w", "-R", `ea_set -r -f ${bad} /bad system.posix_acl_default`, img]);
    const before = await Deno.readFile(img);
    const fs = await Ext4.open(img, { readOnly: false });
    try {
      await assert.rejects(
        () => fs.writeFile("/bad/x", new Uint8Array(0), { mode: 0o644 }),
        (e: unknown) => e instanceof CorruptError && /default ACL/.test(e.message),
      );
      await assert.rejects(() => fs.mkdir("/bad/d"), CorruptError);
      await fs.symlink("t", "/bad/link"); // symlinks never look at the default ACL
      assert.deepEqual(await fs.listXattr("/bad/link"), []);
    } finally {
      await fs.close();
    }
    const after = await Deno.readFile(img);
    const checked = await fsck(dir.path, after);
    assert.equal(checked.code, 0, checked.output);
    assert.notDeepEqual(after, before); // the symlink
    const kernel = await withKernelMount(img, async (mnt) => {
      const r = await run("python3", [
        "-c",
        "import os,sys\ntry: os.open(sys.argv[1], os.O_CREAT | os.O_WRONLY, 0o644)\n" +
        "except OSError as e: print(e.errno)",
        `${mnt}/bad/x`,
      ]);
      return [
        r.stdout.trim(),
        (await Array.fromAsync(Deno.readDir(`${mnt}/bad`))).map((e) => e.name),
      ];
    });
    assert.deepEqual(kernel, ["5", ["link"]], "the kernel: EIO, nothing but our symlink");
  },
);
