/**
 * Feature flags of the ext2/3/4 superblock: names exactly as e2fsprogs spells them, and the
 * support table that decides what ext4ts may do with a filesystem that uses each feature.
 *
 * @module
 */

/** Which of the three feature words a flag lives in. */
export type FeatureKind = "compat" | "incompat" | "ro_compat";

/** What ext4ts can do with a filesystem: mount read-write, read-only, or not at all. */
export type SupportLevel = "rw" | "ro" | "refuse";

interface FeatureInfo {
  readonly name: string;
  /** What the reader and writer can do with this feature, and why when less than rw. */
  readonly level: SupportLevel;
  readonly reason?: string;
}

const COMPAT: Record<number, FeatureInfo> = {
  0x1: { name: "dir_prealloc", level: "rw" },
  0x2: { name: "imagic_inodes", level: "rw" },
  0x4: { name: "has_journal", level: "rw" },
  0x8: { name: "ext_attr", level: "rw" },
  0x10: { name: "resize_inode", level: "rw" },
  0x20: { name: "dir_index", level: "rw" },
  0x40: { name: "lazy_bg", level: "rw" },
  0x100: { name: "snapshot_bitmap", level: "ro", reason: "snapshot_bitmap is not maintained" },
  0x200: { name: "sparse_super2", level: "rw" },
  0x400: { name: "fast_commit", level: "rw" },
  0x800: { name: "stable_inodes", level: "rw" },
  0x1000: { name: "orphan_file", level: "rw" },
};

const RO_COMPAT: Record<number, FeatureInfo> = {
  0x1: { name: "sparse_super", level: "rw" },
  0x2: { name: "large_file", level: "rw" },
  // 0x4 (btree_dir) and 0x80 (snapshot) have no name in e2fsprogs (FEATURE_R2, FEATURE_R7):
  // unknown read-only-compatible features, so read-only.
  0x8: { name: "huge_file", level: "rw" },
  0x10: { name: "uninit_bg", level: "rw" },
  0x20: { name: "dir_nlink", level: "rw" },
  0x40: { name: "extra_isize", level: "rw" },
  0x100: { name: "quota", level: "ro", reason: "quota files are not updated" },
  0x200: { name: "bigalloc", level: "ro", reason: "bigalloc allocation is not implemented" },
  0x400: { name: "metadata_csum", level: "rw" },
  0x800: { name: "replica", level: "ro", reason: "replica is not supported for writing" },
  0x1000: { name: "read-only", level: "ro", reason: "the filesystem is marked read-only" },
  0x2000: { name: "project", level: "rw" },
  0x4000: { name: "shared_blocks", level: "ro", reason: "blocks are shared between files" },
  0x8000: { name: "verity", level: "ro", reason: "verity files cannot be written" },
  // Entries in the orphan file are kept like the classic orphan list (lib/orphan_write.ts).
  0x10000: { name: "orphan_present", level: "rw" },
};

const INCOMPAT: Record<number, FeatureInfo> = {
  0x1: { name: "compression", level: "refuse", reason: "compression is not supported" },
  0x2: { name: "filetype", level: "rw" },
  0x4: { name: "needs_recovery", level: "rw" },
  0x8: {
    name: "journal_dev",
    level: "refuse",
    reason: "this is an external journal device, not a filesystem",
  },
  0x10: { name: "meta_bg", level: "rw" },
  0x40: { name: "extent", level: "rw" },
  0x80: { name: "64bit", level: "rw" },
  0x100: { name: "mmp", level: "rw" },
  0x200: { name: "flex_bg", level: "rw" },
  0x400: { name: "ea_inode", level: "ro", reason: "xattr inodes cannot be written" },
  0x1000: { name: "dirdata", level: "refuse", reason: "dirdata (Lustre) is not supported" },
  0x2000: { name: "metadata_csum_seed", level: "rw" },
  0x4000: { name: "large_dir", level: "rw" },
  0x8000: { name: "inline_data", level: "rw" },
  0x10000: { name: "encrypt", level: "ro", reason: "encrypted files cannot be written" },
  0x20000: { name: "casefold", level: "ro", reason: "casefolded directories cannot be written" },
};

const TABLES: Record<FeatureKind, Record<number, FeatureInfo>> = {
  compat: COMPAT,
  incompat: INCOMPAT,
  ro_compat: RO_COMPAT,
};

/** e2fsprogs' letter for unknown flags: FEATURE_C12, FEATURE_I20, FEATURE_R17. */
const UNKNOWN_LETTER: Record<FeatureKind, string> = { compat: "C", incompat: "I", ro_compat: "R" };

/** Well-known bit values, for code that tests features by name. */
export const Compat = {
  HAS_JOURNAL: 0x4,
  EXT_ATTR: 0x8,
  RESIZE_INODE: 0x10,
  DIR_INDEX: 0x20,
  SPARSE_SUPER2: 0x200,
  FAST_COMMIT: 0x400,
  STABLE_INODES: 0x800,
  ORPHAN_FILE: 0x1000,
} as const;

/** Incompatible feature bits. */
export const Incompat = {
  COMPRESSION: 0x1,
  FILETYPE: 0x2,
  RECOVER: 0x4,
  JOURNAL_DEV: 0x8,
  META_BG: 0x10,
  EXTENTS: 0x40,
  BIT64: 0x80,
  MMP: 0x100,
  FLEX_BG: 0x200,
  EA_INODE: 0x400,
  DIRDATA: 0x1000,
  CSUM_SEED: 0x2000,
  LARGEDIR: 0x4000,
  INLINE_DATA: 0x8000,
  ENCRYPT: 0x10000,
  CASEFOLD: 0x20000,
} as const;

/** Read-only-compatible feature bits. */
export const RoCompat = {
  SPARSE_SUPER: 0x1,
  LARGE_FILE: 0x2,
  HUGE_FILE: 0x8,
  GDT_CSUM: 0x10,
  DIR_NLINK: 0x20,
  EXTRA_ISIZE: 0x40,
  QUOTA: 0x100,
  BIGALLOC: 0x200,
  METADATA_CSUM: 0x400,
  READONLY: 0x1000,
  PROJECT: 0x2000,
  VERITY: 0x8000,
  ORPHAN_PRESENT: 0x10000,
} as const;

/** The three feature words of a superblock. */
export interface FeatureWords {
  /** `s_feature_compat`: {@link Compat} bits. */
  readonly compat: number;
  /** `s_feature_incompat`: {@link Incompat} bits. */
  readonly incompat: number;
  /** `s_feature_ro_compat`: {@link RoCompat} bits. */
  readonly roCompat: number;
}

function bitsOf(word: number): number[] {
  const bits: number[] = [];
  for (let b = 0; b < 32; b++) if ((word >>> b) & 1) bits.push(b);
  return bits;
}

function nameOf(kind: FeatureKind, bit: number): string {
  return TABLES[kind][2 ** bit]?.name ?? `FEATURE_${UNKNOWN_LETTER[kind]}${bit}`;
}

/**
 * Feature names in the order `dumpe2fs` prints them: compat, then incompat, then ro_compat,
 * each by bit number.
 *
 * @example
 * ```ts
 * import { featureNames } from "./features.ts";
 * console.log(featureNames({ compat: 0x4, incompat: 0x42, roCompat: 0x1 }));
 * // [ "has_journal", "filetype", "extent", "sparse_super" ]
 * ```
 */
export function featureNames(words: FeatureWords): string[] {
  return [
    ...bitsOf(words.compat).map((b) => nameOf("compat", b)),
    ...bitsOf(words.incompat).map((b) => nameOf("incompat", b)),
    ...bitsOf(words.roCompat).map((b) => nameOf("ro_compat", b)),
  ];
}

/** The verdict of the support table for one filesystem. */
export interface SupportVerdict {
  /** The most ext4ts can do with the filesystem. */
  readonly level: SupportLevel;
  /** Why it can do no more, one reason per limiting feature (empty for rw). */
  readonly reasons: string[];
}

/**
 * Decides from the feature words what ext4ts can do: unknown incompat features refuse,
 * unknown ro_compat features allow read-only, unknown compat features are harmless.
 *
 * @example
 * ```ts
 * import { featureSupport } from "./features.ts";
 * console.log(featureSupport({ compat: 0, incompat: 0x1, roCompat: 0 }));
 * // { level: "refuse", reasons: [ "compression is not supported" ] }
 * ```
 */
export function featureSupport(words: FeatureWords): SupportVerdict {
  const refuse: string[] = [];
  const ro: string[] = [];
  const visit = (kind: FeatureKind, word: number) => {
    for (const bit of bitsOf(word)) {
      const info = TABLES[kind][2 ** bit];
      if (!info) {
        const name = nameOf(kind, bit);
        if (kind === "incompat") refuse.push(`unknown incompatible feature ${name}`);
        else if (kind === "ro_compat") ro.push(`unknown read-only-compatible feature ${name}`);
        continue;
      }
      if (info.level === "refuse") refuse.push(info.reason ?? info.name);
      else if (info.level === "ro") ro.push(info.reason ?? info.name);
    }
  };
  visit("compat", words.compat);
  visit("incompat", words.incompat);
  visit("ro_compat", words.roCompat);
  if (refuse.length) return { level: "refuse", reasons: refuse };
  if (ro.length) return { level: "ro", reasons: ro };
  return { level: "rw", reasons: [] };
}

/**
 * Looks a feature up by its e2fsprogs name.
 *
 * @example
 * ```ts
 * import { featureByName } from "./features.ts";
 * console.log(featureByName("metadata_csum")); // { kind: "ro_compat", mask: 1024 }
 * ```
 */
export function featureByName(name: string): { kind: FeatureKind; mask: number } | undefined {
  for (const kind of ["compat", "incompat", "ro_compat"] as const) {
    for (const [mask, info] of Object.entries(TABLES[kind])) {
      if (info.name === name) return { kind, mask: Number(mask) };
    }
  }
  return undefined;
}
