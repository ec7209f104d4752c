/**
 * The small edit commands (chmod, chown, ln, touch, setfattr) and getfattr as a user runs
 * them against a crafted image: results read back by the kernel (read-only loop mount) and
 * attr(1)'s own getfattr, e2fsck -fn clean; bad input gives one `ext4ts:` line, the
 * documented exit code and an untouched image. Mode, word and value syntax are checked on
 * their own.
 */

import assert from "node:assert/strict";
import { applyMode } from "../cli/modes.ts";
import { splitWords } from "../cli/shell_words.ts";
import { formatXattrValue, parseXattrValue } from "../cli/xattr_text.ts";
import { parseTouchDate, parseTouchStamp } from "../cli/commands/touch.ts";
import { run, runCli, tempDir, testWith, withKernelMount } from "./helpers.ts";
import { fsck, IMAGE_TOOLS, LAYOUTS, mkfsImage } from "./write_fixtures.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();
const KERNEL = [...IMAGE_TOOLS, "root", "loop", "kernel-ext4", "python3", "getfattr"];

Deno.test("chmod modes: octal and symbolic as GNU chmod computes them", () => {
  const cases: [string, number, number][] = [
    ["755", 0o100600, 0o755],
    ["0644", 0o100777, 0o644],
    ["4755", 0o100644, 0o4755],
    ["u+x,g-w,o=r", 0o100664, 0o744],
    ["a+X", 0o040600, 0o711], // a directory: X means x
    ["a+X", 0o100600, 0o600], // a file without any x: X does nothing
    ["a+X", 0o100700, 0o711],
    ["go=u", 0o100750, 0o777],
    ["u=rw,go=", 0o100777, 0o600],
    ["+t", 0o040777, 0o1777],
    ["u+s,g+s", 0o100755, 0o6755],
    ["g=rx", 0o042775, 0o2755], // a directory keeps its set-gid bit through "="
    ["755", 0o042700, 0o2755], // ... and through a 4-digit octal mode
    ["00755", 0o042700, 0o755], // five digits clear it
    ["-w", 0o100666, 0o444],
  ];
  for (const [text, current, want] of cases) {
    assert.equal(applyMode(text, current).toString(8), want.toString(8), `${text} on ${current}`);
  }
  for (const bad of ["9", "u+q", "x+r", "", "77777", "u+x,", "0o755"]) {
    assert.throws(() => applyMode(bad, 0o100644), /invalid mode/, bad);
  }
});

Deno.test("batch words: quotes, escapes and comments like a shell's", () => {
  assert.deepEqual(splitWords(`setfattr -n user.a -v "two words" /f # why`), [
    "setfattr",
    "-n",
    "user.a",
    "-v",
    "two words",
    "/f",
  ]);
  assert.deepEqual(splitWords(`a 'b c'd "e\\"f" g\\ h x#y`), ["a", "b cd", 'e"f', "g h", "x#y"]);
  assert.deepEqual(splitWords(`   # only a comment`), []);
  assert.deepEqual(splitWords(`touch ""`), ["touch", ""]);
  assert.throws(() => splitWords(`mkdir "/x`), /unterminated double quote/);
  assert.throws(() => splitWords(`mkdir '/x`), /unterminated single quote/);
});

Deno.test("xattr values: setfattr's input notations, getfattr's output encodings", () => {
  assert.deepEqual(parseXattrValue("plain text"), enc.encode("plain text"));
  assert.deepEqual(parseXattrValue("0x00ff10"), Uint8Array.of(0, 255, 16));
  assert.deepEqual(parseXattrValue("0sAAEC"), Uint8Array.of(0, 1, 2));
  assert.deepEqual(parseXattrValue('"a\\"b\\\\c\\012"'), enc.encode('a"b\\c\n'));
  assert.throws(() => parseXattrValue("0x123"), /bad input encoding/);
  assert.throws(() => parseXattrValue('"open'), /bad input encoding/);
  const show = (v: Uint8Array, e?: "text" | "hex" | "base64") => dec.decode(formatXattrValue(v, e));
  assert.equal(show(enc.encode("hello")), '"hello"');
  assert.equal(show(enc.encode("hi\n")), "0saGkK"); // 1 unprintable byte in 3: base64
  assert.equal(show(enc.encode('a"b\\c\n'), "text"), '"a\\"b\\\\c\\012"');
  assert.equal(show(Uint8Array.of(0, 255), "hex"), "0x00ff");
  assert.equal(show(new Uint8Array(0)), '""');
  assert.equal(show(new Uint8Array(0), "hex"), "0x");
});

Deno.test("touch dates: -d keeps nanoseconds, -t is [[CC]YY]MMDDhhmm[.ss] in local time", () => {
  assert.deepEqual(parseTouchDate("2024-05-01T12:00:00.123456789Z"), {
    sec: 1714564800,
    nsec: 123456789,
  });
  assert.deepEqual(parseTouchDate("@1700000000.5"), { sec: 1700000000, nsec: 500000000 });
  assert.deepEqual(parseTouchDate("2024-05-01T12:00:00Z"), { sec: 1714564800, nsec: 0 });
  const local = new Date(2020, 0, 2, 3, 4, 5).getTime() / 1000;
  assert.deepEqual(parseTouchStamp("202001020304.05"), { sec: local, nsec: 0 });
  assert.deepEqual(parseTouchStamp("2001020304.05"), { sec: local, nsec: 0 });
  for (const bad of ["yesterday-ish", "@x"]) {
    assert.throws(() => parseTouchDate(bad), /invalid date/);
  }
  for (const bad of ["202004310000", "2020", "202001020360"]) {
    assert.throws(() => parseTouchStamp(bad), /invalid date/, bad);
  }
});

/** lstat and xattrs of `paths` under `root`, as the kernel reports them. */
async function kernelStat(
  root: string,
  paths: string[],
): Promise<Record<string, Record<string, unknown>>> {
  const script = `
import os, sys, json
root = sys.argv[1]
out = {}
for rel in sys.argv[2:]:
    p = os.path.join(root, rel.lstrip("/"))
    st = os.lstat(p)
    e = {"mode": oct(st.st_mode), "uid": st.st_uid, "gid": st.st_gid, "nlink": st.st_nlink,
         "ino": st.st_ino, "size": st.st_size,
         "atime": str(st.st_atime_ns), "mtime": str(st.st_mtime_ns)}
    if os.path.islink(p): e["link"] = os.readlink(p)
    e["xattrs"] = {k: os.getxattr(p, k, follow_symlinks=False).hex()
                   for k in sorted(os.listxattr(p, follow_symlinks=False))}
    out[rel] = e
print(json.dumps(out))
`;
  const r = await run("python3", ["-c", script, root, ...paths]);
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout);
}

async function cli(args: string[]): Promise<void> {
  const r = await runCli(args);
  assert.equal(r.code, 0, `ext4ts ${args.join(" ")}: ${r.stderr}`);
  assert.equal(r.stderr, "", `ext4ts ${args.join(" ")} said something on stderr`);
}

/** An ext4 image with /etc/passwd and /etc/group naming www-data (33) and ann (1000). */
async function craftedImage(dir: string): Promise<string> {
  const img = `${dir}/edit.img`;
  await Deno.writeFile(img, await mkfsImage(dir, LAYOUTS[2]));
  await Deno.writeTextFile(
    `${dir}/passwd`,
    "root:x:0:0:root:/root:/bin/sh\nwww-data:x:33:33::/var/www:/bin/sh\nann:x:1000:1001::/home/ann:/bin/sh\n",
  );
  await Deno.writeTextFile(`${dir}/group`, "root:x:0:\nwww-data:x:33:\nstaff:x:50:ann\n");
  await cli(["mkdir", "-p", img, "/etc", "/srv/www", "/srv/priv"]);
  await cli(["put", img, `${dir}/passwd`, "/etc/passwd"]);
  await cli(["put", img, `${dir}/group`, "/etc/group"]);
  return img;
}

testWith(
  "chmod, chown, ln, touch, setfattr: the kernel sees each change, e2fsck is clean",
  KERNEL,
  async () => {
    await using dir = await tempDir();
    const img = await craftedImage(dir.path);
    await cli(["touch", img, "/srv/www/index.html", "/srv/f"]);
    await cli(["chmod", img, "640", "/srv/www/index.html"]);
    await cli(["chmod", img, "u+x,g-w,o=r", "/srv/f"]); // 644 -> 744
    await cli(["chmod", img, "700", "/srv/priv"]);
    await cli(["chmod", img, "go+X", "/srv/priv"]); // 700 -> 711
    await cli(["chown", img, "www-data:", "/srv/www"]); // the image's passwd: 33, group 33
    await cli(["chown", img, "ann:staff", "/srv/www/index.html"]); // 1000:50
    await cli(["chown", img, "1234:5678", "/srv/f"]);
    await cli(["ln", img, "/srv/f", "/srv/hard"]);
    await cli(["ln", "-s", img, "../srv/www", "/etc/www"]);
    await cli(["ln", "-sf", img, "../srv/f", "/etc/www"]); // into the directory it names
    await cli(["ln", "-sfn", img, "../srv/f", "/etc/www"]); // -n: the link itself replaced
    await cli(["rm", img, "/srv/www/f"]);
    await cli(["ln", "-s", img, "f", "/srv/www"]); // into the directory: /srv/www/f
    await cli(["chown", "-h", img, ":77", "/srv/www/f"]); // the link itself
    await cli(["chown", img, ":88", "/etc/www"]); // follows: /srv/f
    await cli(["touch", "-d", "2024-05-01T12:00:00.123456789Z", img, "/srv/f"]);
    await cli(["touch", "-a", "-d", "@1600000000.5", img, "/srv/www/index.html"]);
    await cli(["touch", "-m", "-d", "@1500000000", img, "/srv/www/index.html"]);
    await cli(["touch", "-c", img, "/srv/not-created"]);
    await cli(["setfattr", img, "-n", "user.a", "-v", "hello", "/srv/f"]);
    await cli(["setfattr", img, "-n", "user.b", "-v", "0x00ff", "/srv/f"]);
    await cli(["setfattr", img, "-n", "user.c", "-v", '"quoted\\012"', "/etc/www"]); // follows
    await cli(["setfattr", img, "-n", "user.gone", "/srv/f"]);
    await cli(["setfattr", img, "-x", "user.gone", "/srv/f"]);
    await cli(["setfattr", img, "-n", "user.empty", "/srv/www"]);

    const check = await fsck(dir.path, await Deno.readFile(img));
    assert.equal(check.code, 0, check.output);
    const paths = [
      "/srv/f",
      "/srv/hard",
      "/srv/www",
      "/srv/www/index.html",
      "/srv/www/f",
      "/srv/priv",
      "/etc/www",
    ];
    await withKernelMount(img, async (mnt) => {
      const k = await kernelStat(mnt, paths);
      const f = k["/srv/f"];
      assert.equal(f.mode, "0o100744");
      assert.deepEqual([f.uid, f.gid, f.nlink], [1234, 88, 2]);
      assert.equal(f.mtime, "1714564800123456789");
      assert.equal(f.atime, "1714564800123456789");
      assert.deepEqual(f.xattrs, {
        "user.a": "68656c6c6f",
        "user.b": "00ff",
        "user.c": "71756f7465640a",
      });
      assert.equal(k["/srv/hard"].ino, f.ino);
      assert.deepEqual(k["/srv/www"].xattrs, { "user.empty": "" });
      assert.deepEqual([k["/srv/www"].uid, k["/srv/www"].gid], [33, 33]);
      const idx = k["/srv/www/index.html"];
      assert.equal(idx.mode, "0o100640");
      assert.deepEqual([idx.uid, idx.gid, idx.size], [1000, 50, 0]);
      assert.equal(idx.atime, "1600000000500000000");
      assert.equal(idx.mtime, "1500000000000000000");
      assert.equal(k["/srv/priv"].mode, "0o40711");
      assert.equal(k["/srv/www/f"].link, "f");
      assert.deepEqual([k["/srv/www/f"].uid, k["/srv/www/f"].gid], [0, 77]);
      assert.equal(k["/etc/www"].link, "../srv/f");
      assert.equal(
        (await run("sh", ["-c", `test -e "${mnt}/srv/not-created" && echo yes || echo no`]))
          .stdout,
        "no\n",
      );
      // getfattr of the image against attr(1)'s on the kernel's view, byte for byte.
      for (
        const args of [
          ["-d"],
          ["-d", "-e", "hex"],
          ["-d", "-e", "text"],
          ["-d", "-e", "base64"],
          ["-n", "user.b"],
          [],
          ["-d", "-m", "-"],
        ]
      ) {
        const host = await run("getfattr", [...args, "srv/f", "srv/www", "etc/www"], { cwd: mnt });
        const ours = await runCli(["getfattr", ...args, img, "/srv/f", "/srv/www", "/etc/www"]);
        assert.equal(ours.code, host.code, `getfattr ${args.join(" ")}: ${ours.stderr}`);
        assert.equal(ours.stdout, host.stdout, `getfattr ${args.join(" ")}`);
      }
    }, { readOnly: true });
  },
);

testWith(
  "edit commands: bad input is one ext4ts: line, the documented exit code, no write",
  [...IMAGE_TOOLS, "sha256sum"],
  async () => {
    await using dir = await tempDir();
    const img = await craftedImage(dir.path);
    await cli(["touch", img, "/f"]);
    await cli(["setfattr", img, "-n", "user.x", "-v", "1", "/f"]);
    const sum = async () => (await run("sha256sum", [img])).stdout;
    const before = await sum();
    const cases: [string[], number, RegExp][] = [
      [["chmod", img, "u+q", "/f"], 1, /invalid mode: 'u\+q'/],
      [["chmod", img, "644", "/missing"], 1, /no such file or directory/],
      [["chown", img, "nobody-here", "/f"], 1, /invalid user: 'nobody-here'/],
      [["chown", img, "0:nogroup", "/f"], 1, /invalid group: '0:nogroup'/],
      [["touch", "-d", "someday", img, "/f"], 1, /invalid date format 'someday'/],
      [["touch", img, "/missing/f"], 1, /no such file or directory/],
      [["ln", img, "/f", "/f"], 1, /exists/],
      [["ln", img, "/srv", "/dirlink"], 1, /hard link not allowed for directory/],
      [["ln", "-sf", img, "/srv/www", "/srv"], 1, /\/srv\/www: cannot overwrite a directory/],
      [["setfattr", img, "-x", "user.nothing", "/f"], 1, /^ext4ts: \/f: No such attribute$/m],
      [["setfattr", img, "-n", "user.x", "-v", "0x1", "/f"], 1, /bad input encoding/],
      [["setfattr", img, "-n", "user.x", "-x", "user.y", "/f"], 2, /exactly one of -n/],
      [
        ["getfattr", "-n", "user.nothing", img, "/f"],
        1,
        /^ext4ts: \/f: user.nothing: No such attribute$/m,
      ],
      [["getfattr", "-e", "rot13", "-d", img, "/f"], 2, /unrecognized encoding/],
      [["chmod", img, "755"], 2, /missing required argument/],
      [["chmod", "--bogus", img, "755", "/f"], 2, /unknown option/],
    ];
    for (const [args, code, message] of cases) {
      const r = await runCli(args);
      assert.equal(r.code, code, `ext4ts ${args.join(" ")}: ${r.stderr}`);
      assert.match(r.stderr, message, args.join(" "));
      if (code !== 2) {
        assert.match(r.stderr, /^ext4ts: [^\n]+\n$/, `one line: ${args.join(" ")}`);
      }
      assert.equal(await sum(), before, `ext4ts ${args.join(" ")} changed the image`);
    }
  },
);
