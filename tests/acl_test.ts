import assert from "node:assert/strict";
import fc from "fast-check";
import {
  ACL_UNDEFINED_ID,
  type AclEntry,
  aclFromXattr,
  AclTag,
  aclToXattr,
  decodeExt4Acl,
  encodeExt4Acl,
  ext4AclToXattr,
  formatAcl,
} from "../lib/ondisk/acl.ts";
import { CorruptError, Ext4Error } from "../lib/errors.ts";
import { readRawXattrs } from "../lib/ext4/xattr.ts";
import { XattrIndex } from "../lib/ondisk/xattr.ts";
import { makeImage, runOk, tempDir, testWith } from "./helpers.ts";
import { RawImage } from "./raw_image.ts";

function unhex(s: string): Uint8Array {
  return Uint8Array.from(s.match(/../g)!, (h) => parseInt(h, 16));
}
function hex(b: Uint8Array): string {
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

Deno.test("ext4 ACL → posix_acl_xattr, byte for byte as the kernel's getxattr", () => {
  // Captured from `setfacl -m u:1000:rwx` on a kernel mount: debugfs shows the disk bytes,
  // os.getxattr the VFS ones.
  const disk = unhex("01000000010006000200070" + "0e8030000040004001000070020000400");
  const vfs = "0200000001000600ffffffff02000700e803000004000400ffffffff" +
    "10000700ffffffff20000400ffffffff";
  assert.equal(hex(ext4AclToXattr(disk)), vfs);
  assert.deepEqual(encodeExt4Acl(decodeExt4Acl(disk)), disk);
  assert.deepEqual(aclToXattr(aclFromXattr(unhex(vfs))), unhex(vfs));
});

Deno.test("ACL round trips and bad input", () => {
  const entry = fc.oneof(
    fc.record({
      tag: fc.constantFrom(AclTag.USER, AclTag.GROUP),
      perm: fc.nat(7),
      id: fc.nat(0xfffffffe),
    }),
    fc.record({
      tag: fc.constantFrom(AclTag.USER_OBJ, AclTag.GROUP_OBJ, AclTag.MASK, AclTag.OTHER),
      perm: fc.nat(7),
      id: fc.constant(ACL_UNDEFINED_ID),
    }),
  );
  // ext4's size rule assumes the four short entries come first when there are named ones,
  // which holds for every valid ACL (sorted by tag: USER_OBJ, USER…, GROUP_OBJ, GROUP…, MASK, OTHER).
  const validAcl = fc.tuple(
    fc.array(fc.nat(0xfffffffe), { maxLength: 5 }),
    fc.array(fc.nat(0xfffffffe), { maxLength: 5 }),
    fc.array(fc.nat(7), { minLength: 4, maxLength: 4 }),
  ).map(([users, groups, p]): AclEntry[] => {
    const u = ACL_UNDEFINED_ID;
    const named = users.length + groups.length > 0;
    return [
      { tag: AclTag.USER_OBJ, perm: p[0], id: u },
      ...users.map((id) => ({ tag: AclTag.USER, perm: p[1], id })),
      { tag: AclTag.GROUP_OBJ, perm: p[2], id: u },
      ...groups.map((id) => ({ tag: AclTag.GROUP, perm: p[2], id })),
      ...(named ? [{ tag: AclTag.MASK, perm: p[3], id: u }] : []),
      { tag: AclTag.OTHER, perm: p[3], id: u },
    ];
  });
  fc.assert(
    fc.property(validAcl, (acl) => {
      assert.deepEqual(decodeExt4Acl(encodeExt4Acl(acl)), acl);
      assert.deepEqual(aclFromXattr(aclToXattr(acl)), acl);
    }),
  );
  fc.assert(
    fc.property(fc.array(entry, { maxLength: 10 }), (records) => {
      const acl = records.map((e) => ({ ...e })); // fc.record builds null-prototype objects
      assert.deepEqual(aclFromXattr(aclToXattr(acl)), acl);
    }),
  );
  assert.throws(() => decodeExt4Acl(new Uint8Array([2, 0, 0, 0])), /unknown version/);
  assert.throws(() => decodeExt4Acl(new Uint8Array([1, 0, 0])), CorruptError);
  assert.throws(() => decodeExt4Acl(unhex("01000000" + "4000" + "0700")), /unknown tag/);
  assert.throws(() => decodeExt4Acl(unhex("01000000" + "0200" + "0700" + "e803")), /truncated/);
  assert.throws(() => aclFromXattr(unhex("0100000001000600ffffffff")), /unknown version/);
  assert.throws(() => aclFromXattr(unhex("0200000001000600ffff")), /bad size/);
  // Random bytes: only CorruptErrors.
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 80 }), fc.boolean(), (b, version1) => {
      if (b.length >= 4) b[0] = version1 ? 1 : 2;
      for (const f of [decodeExt4Acl, aclFromXattr, ext4AclToXattr]) {
        try {
          f(b);
        } catch (e) {
          if (!(e instanceof Ext4Error)) throw e;
        }
      }
    }),
    { numRuns: 3000 },
  );
});

Deno.test("formatAcl prints getfacl's lines, with effective rights under a mask", () => {
  const u = ACL_UNDEFINED_ID;
  const acl: AclEntry[] = [
    { tag: AclTag.USER_OBJ, perm: 6, id: u },
    { tag: AclTag.USER, perm: 7, id: 1000 },
    { tag: AclTag.GROUP_OBJ, perm: 4, id: u },
    { tag: AclTag.MASK, perm: 5, id: u },
    { tag: AclTag.OTHER, perm: 0, id: u },
  ];
  assert.equal(
    formatAcl(acl, { prefix: "default:", effective: false }),
    "default:user::rw-\ndefault:user:1000:rwx\ndefault:group::r--\ndefault:mask::r-x\ndefault:other::---",
  );
  assert.match(formatAcl(acl), /^user:1000:rwx\t#effective:r-x$/m);
});

testWith(
  "ACLs set by setfacl decode to getfacl's entries and getxattr's bytes",
  ["root", "loop", "kernel-ext4", "mkfs.ext4", "debugfs", "setfacl", "getfacl", "python3"],
  async () => {
    await using tmp = await tempDir();
    const img = `${tmp.path}/a.img`;
    const specs: Record<string, { access: string; def?: string }> = {
      plain: { access: "u:1000:rwx,g:100:r-x,m::rwx" },
      many: {
        access: Array.from({ length: 12 }, (_, i) => `u:${1000 + i}:r--,g:${i * 1000000}:-w-`)
          .join(",") + ",m::r-x",
      },
      dir: { access: "u:5:---", def: "u:1000:r-x,g::rwx,o::---" },
    };
    const want: Record<string, { getfacl: string; xattr: Record<string, string> }> = {};
    await makeImage(img, {
      size: "8M",
      populate: async (m) => {
        for (const [name, spec] of Object.entries(specs)) {
          const p = `${m}/${name}`;
          if (spec.def) await Deno.mkdir(p);
          else await Deno.writeTextFile(p, "");
          await runOk("setfacl", ["-m", spec.access, p]);
          if (spec.def) await runOk("setfacl", ["-d", "-m", spec.def, p]);
          const getfacl = await runOk("getfacl", ["-n", "-E", "--omit-header", p]);
          const xattr = JSON.parse(
            await runOk("python3", [
              "-c",
              "import os,sys,json; p=sys.argv[1]; print(json.dumps({n: os.getxattr(p,n).hex() for n in os.listxattr(p) if 'acl' in n}))",
              p,
            ]),
          );
          want[name] = { getfacl: getfacl.trim(), xattr };
        }
      },
    });
    const raw = await RawImage.load(img);
    for (const name of Object.keys(specs)) {
      const entries = await readRawXattrs(raw.xattrSource(await raw.ino(`/${name}`)));
      const lines: string[] = [];
      const xattr: Record<string, string> = {};
      for (const e of entries) {
        if (e.index === XattrIndex.POSIX_ACL_ACCESS || e.index === XattrIndex.POSIX_ACL_DEFAULT) {
          const acl = decodeExt4Acl(e.value);
          const def = e.index === XattrIndex.POSIX_ACL_DEFAULT;
          lines.push(formatAcl(acl, { prefix: def ? "default:" : "", effective: false }));
          xattr[e.name] = hex(ext4AclToXattr(e.value));
        }
      }
      // getfacl prints the access ACL first, then the default one.
      lines.sort((a, b) => Number(a.startsWith("default:")) - Number(b.startsWith("default:")));
      assert.equal(lines.join("\n"), want[name].getfacl, name);
      assert.deepEqual(xattr, want[name].xattr, name);
    }
  },
);
