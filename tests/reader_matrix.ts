/**
 * The reader's feature matrix (issue #3): mkfs options and tests/fixtures/populate_tree.py
 * arguments per image. tests/reader_oracle_test.ts lists each image with ext4ts and the kernel;
 * tests/fuse_ext4_test.ts lists the same images through an ext4ts mount.
 *
 * @module
 */

/** One image of the matrix. */
export interface ReaderCase {
  /** The test name. */
  name: string;
  /** mkfs program (default mkfs.ext4). */
  mkfs?: string;
  /** mkfs options. */
  args?: string[];
  /** Image size (default that of the test). */
  size?: string;
  /** populate_tree.py options. */
  populate?: string[];
  /**
   * Structures this image must hold (reader_oracle_test's `structuresOf`), so that equal
   * listings prove them read.
   */
  holds?: string[];
}

/** Every image of the matrix. */
export const READER_MATRIX: ReaderCase[] = [
  { name: "ext2", mkfs: "mkfs.ext2", holds: ["triple indirect", "htree"] },
  { name: "ext2 ^filetype", mkfs: "mkfs.ext2", args: ["-O", "^filetype"] },
  { name: "ext2 128-byte inodes", mkfs: "mkfs.ext2", args: ["-I", "128"] },
  { name: "ext3", mkfs: "mkfs.ext3", holds: ["triple indirect", "htree"] },
  {
    name: "ext4 4k blocks, 50 000-entry directory",
    args: ["-b", "4096", "-N", "70000"],
    size: "128M",
    populate: ["--big-dir", "50000"],
    holds: ["extent depth 1", "unwritten extent", "big htree", "slow symlink"],
  },
  { name: "ext4 1k blocks", args: ["-b", "1024"], holds: ["extent depth 2", "unwritten extent"] },
  { name: "ext4 ^64bit", args: ["-b", "4096", "-O", "^64bit"] },
  { name: "ext4 ^metadata_csum", args: ["-b", "4096", "-O", "^metadata_csum"] },
  {
    name: "ext4 inline_data",
    args: ["-b", "4096", "-O", "inline_data"],
    holds: ["inline file", "inline dir"],
  },
  { name: "ext4 bigalloc", args: ["-b", "4096", "-O", "bigalloc", "-C", "16384"], size: "128M" },
  { name: "ext4 large_dir 1k blocks", args: ["-b", "1024", "-O", "large_dir"] },
  { name: "ext4 meta_bg", args: ["-b", "4096", "-O", "meta_bg,^resize_inode"] },
  {
    name: "ext4 metadata_csum_seed, 1024-byte inodes",
    args: ["-b", "4096", "-O", "metadata_csum_seed", "-I", "1024"],
  },
  {
    name: "ext4 ^extent ^dir_index (block maps, linear directories)",
    args: ["-b", "4096", "-O", "^extent,^dir_index,^64bit"],
    holds: ["double indirect"],
  },
  {
    name: "ext4 ea_inode",
    args: ["-b", "4096", "-O", "ea_inode"],
    populate: ["--ea-inode"],
    holds: ["xattr block"],
  },
];
