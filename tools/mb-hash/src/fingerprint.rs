//! File contents hashed with BLAKE3, in parallel, and the digest of a selection.
//!
//! # The selection digest
//!
//! A selection's digest is BLAKE3 over this byte string, which depends only on what the copy
//! will produce under its destination, so that moving the checkout, touching files, or
//! changing their owner does not change it:
//!
//! ```text
//! "memobuild-selection-v1\n"
//! u64 LE number of entries
//! for each entry, sorted by name:
//!     u64 LE length of name, name (UTF-8)
//!     one byte of kind: b'f' file, b'd' directory, b'l' symlink
//!     u32 LE mode (permission bits, & 0o7777)
//!     u64 LE size (0 for directories and symlinks)
//!     file:    u64 LE length, BLAKE3 hex digest of the content
//!     symlink: u64 LE length, link target
//!     directory: nothing
//! ```
//!
//! Every variable-length field is length-prefixed, so no two different selections encode to
//! the same bytes. The source path, mtime, ctime, uid, gid and the context's absolute path are
//! deliberately left out. Bump the version string on any change.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use rayon::prelude::*;

use mb_core::context::EntryKind;

use crate::error::HashError;
use crate::scan::{ContextTree, Node};
use crate::select::SelectedEntry;
use crate::sorted::SortedMap;
use crate::statcache::StatCache;

/// Files at least this big are memory-mapped and hashed on several threads; below it, one
/// read is cheaper than setting up the map.
const MMAP_THRESHOLD: u64 = 1 << 20;

/// Threads that read and hash files when there are many to read. Reading files that are not
/// in the page cache waits on the disk, not on a core, and a disk (a virtual one above all)
/// reaches its speed only with many requests in flight: on the 1 GB bench tree with the page
/// cache dropped, plain readers got 87 MB/s with one thread, 143 MB/s with two (one per core,
/// what the global pool has), 262 MB/s with 8 and 377 MB/s with 32. Files already cached
/// hash as fast with 32 threads as with one per core.
const IO_THREADS: usize = 32;

/// What hashing a file found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileDigest {
    /// BLAKE3 of the content.
    pub hash: blake3::Hash,
    /// The number of bytes hashed.
    pub size: u64,
}

/// Hashes one file, which the walk found to be a regular file.
///
/// Opened without following a symlink and without blocking, then checked with `fstat`, so that
/// a file swapped for a symlink (which could point anywhere on the host) or for a fifo (which
/// would hang the read) between the walk and the read is an error naming it rather than
/// content from elsewhere. Big files are memory-mapped through `/proc/self/fd`, which reopens
/// the very file checked rather than whatever the path names by then; without `/proc` they
/// are read through the open descriptor.
pub fn hash_file(path: &Path) -> Result<FileDigest, HashError> {
    let swapped = |found: &'static str| HashError::NotARegularFile {
        path: path.to_path_buf(),
        found,
    };
    let file = File::options()
        .read(true)
        .custom_flags(libc_flags::O_NOFOLLOW | libc_flags::O_NONBLOCK)
        .open(path)
        .map_err(|error| match error.raw_os_error() {
            Some(libc_flags::ELOOP) => swapped("symlink"),
            _ => HashError::io(path)(error),
        })?;
    let metadata = file.metadata().map_err(HashError::io(path))?;
    let file_type = metadata.file_type();
    if !file_type.is_file() {
        return Err(swapped(if file_type.is_dir() {
            "directory"
        } else {
            "special file"
        }));
    }
    let mut hasher = blake3::Hasher::new();
    let mapped = if metadata.len() >= MMAP_THRESHOLD {
        let by_descriptor = Path::new("/proc/self/fd").join(file.as_raw_fd().to_string());
        match hasher.update_mmap_rayon(&by_descriptor) {
            Ok(_) => true,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => false,
            Err(error) => return Err(HashError::io(path)(error)),
        }
    } else {
        false
    };
    if !mapped {
        hasher.update_reader(file).map_err(HashError::io(path))?;
    }
    Ok(FileDigest {
        hash: hasher.finalize(),
        size: hasher.count(),
    })
}

/// The few constants of `<fcntl.h>` and `<errno.h>` that [`hash_file`] needs, from rustix
/// rather than a libc dependency.
mod libc_flags {
    /// Fail with ELOOP instead of following a symlink in the last component.
    pub const O_NOFOLLOW: i32 = rustix::fs::OFlags::NOFOLLOW.bits() as i32;
    /// Open a fifo without waiting for a writer.
    pub const O_NONBLOCK: i32 = rustix::fs::OFlags::NONBLOCK.bits() as i32;
    /// What O_NOFOLLOW gives for a symlink.
    pub const ELOOP: i32 = rustix::io::Errno::LOOP.raw_os_error();
}

/// The digests of the files a run needed, by context-relative path.
#[derive(Debug, Default)]
pub struct Hashed<'t> {
    /// Every needed file's digest.
    pub digests: SortedMap<'t, FileDigest>,
    /// How many of them were read.
    pub n_read: u64,
    /// How many came from the stat cache.
    pub n_cached: u64,
}

/// The digest of every file in `wanted` (paths and nodes of `tree`, duplicates allowed): from
/// `cache` when it vouches for the file's stat, else read and hashed, in parallel.
pub fn hash_files<'t>(
    tree: &'t ContextTree,
    mut wanted: Vec<(&'t str, &'t Node)>,
    cache: &StatCache<'_>,
) -> Result<Hashed<'t>, HashError> {
    wanted.sort_unstable_by_key(|(path, _)| *path);
    wanted.dedup_by_key(|(path, _)| *path);
    let mut cached_digests = cache.reader();
    let mut digests: Vec<(&'t str, Option<FileDigest>)> = wanted
        .iter()
        .map(|(path, node)| {
            let cached = cached_digests
                .lookup(path, &node.stat)
                .map(|bytes| FileDigest {
                    hash: blake3::Hash::from_bytes(bytes),
                    size: node.size,
                });
            (*path, cached)
        })
        .collect();
    let to_read: Vec<usize> = (0..digests.len())
        .filter(|file_idx| digests[*file_idx].1.is_none())
        .collect();
    let read_all = || {
        to_read
            .par_iter()
            .map(|file_idx| {
                let (path, _) = wanted[*file_idx];
                hash_file(&tree.root().join(path))
            })
            .collect::<Result<Vec<FileDigest>, HashError>>()
    };
    // Many files to read are likely not all in the page cache; see IO_THREADS.
    let io_pool = (to_read.len() >= IO_THREADS)
        .then(|| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(IO_THREADS)
                .build()
        })
        .and_then(Result::ok);
    let read = match io_pool {
        Some(pool) => pool.install(read_all),
        None => read_all(),
    }?;
    for (file_idx, digest) in to_read.iter().zip(read) {
        digests[*file_idx].1 = Some(digest);
    }
    let n_read = to_read.len() as u64;
    Ok(Hashed {
        n_cached: digests.len() as u64 - n_read,
        n_read,
        digests: SortedMap::from_sorted(
            digests
                .into_iter()
                .filter_map(|(path, digest)| Some((path, digest?)))
                .collect(),
        )
        .unwrap_or_default(),
    })
}

/// The stat cache a run leaves behind: every file of `tree` it hashed, plus the entries of the
/// old `cache` that still hold; None when that is exactly the old cache.
pub fn updated_cache(
    tree: &ContextTree,
    hashed: &Hashed<'_>,
    cache: &StatCache<'_>,
    started_ns: i64,
) -> Option<Vec<u8>> {
    // Nothing read and every old entry still vouching for a file: the cache would be
    // rewritten as it is, which a warm run must not pay for.
    if hashed.n_read == 0 {
        let mut still_valid = cache.reader();
        let n_still_valid = tree
            .file_paths()
            .filter(|(path, node)| still_valid.lookup(path, &node.stat).is_some())
            .count();
        if n_still_valid == cache.len() {
            return None;
        }
    }
    let (mut hashed_digests, mut cached_digests) = (hashed.digests.cursor(), cache.reader());
    let entries: Vec<(&str, crate::statcache::FileStat, [u8; 32])> = tree
        .file_paths()
        .filter_map(|(path, node)| {
            let digest = match hashed_digests.get(path) {
                // A file that changed size between the walk and the read gets no entry.
                Some(digest) if digest.size == node.stat.size => *digest.hash.as_bytes(),
                Some(_) => return None,
                None => cached_digests.lookup(path, &node.stat)?,
            };
            Some((path, node.stat, digest))
        })
        .collect();
    Some(crate::statcache::encode(started_ns, entries.into_iter()))
}

/// Fills in the digest and size of every file entry from `digests`, keyed by source.
pub fn apply_digests(entries: &mut [SelectedEntry<'_>], digests: &SortedMap<'_, FileDigest>) {
    let mut digests = digests.cursor();
    for entry in entries
        .iter_mut()
        .filter(|entry| entry.kind == EntryKind::File)
    {
        if let Some(file_digest) = digests.get(entry.source) {
            entry.digest = Some(file_digest.hash);
            entry.size = file_digest.size;
        }
    }
}

/// Feeds the encoding of the module comment to BLAKE3 through a buffer, rather than building
/// it whole: for a context of 100,000 files it is over ten megabytes.
struct Encoder {
    hasher: blake3::Hasher,
    buffer: Vec<u8>,
}

impl Encoder {
    const FLUSH_AT: usize = 64 << 10;

    fn raw(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
        if self.buffer.len() >= Self::FLUSH_AT {
            self.hasher.update(&self.buffer);
            self.buffer.clear();
        }
    }

    fn length_prefixed(&mut self, bytes: &[u8]) {
        self.raw(&(bytes.len() as u64).to_le_bytes());
        self.raw(bytes);
    }

    fn finalize(mut self) -> blake3::Hash {
        self.hasher.update(&self.buffer);
        self.hasher.finalize()
    }
}

/// The digest of entries sorted by name, in the encoding described in the module comment.
pub fn entries_digest(entries: &[SelectedEntry<'_>]) -> String {
    let mut encoder = Encoder {
        hasher: blake3::Hasher::new(),
        buffer: Vec::with_capacity(Encoder::FLUSH_AT + 1024),
    };
    encoder.raw(b"memobuild-selection-v1\n");
    encoder.raw(&(entries.len() as u64).to_le_bytes());
    for entry in entries {
        encoder.length_prefixed(entry.name.as_bytes());
        encoder.raw(&[match entry.kind {
            EntryKind::File => b'f',
            EntryKind::Dir => b'd',
            EntryKind::Symlink => b'l',
        }]);
        encoder.raw(&entry.mode.to_le_bytes());
        encoder.raw(&entry.size.to_le_bytes());
        match entry.kind {
            EntryKind::File => match entry.digest {
                Some(digest) => encoder.length_prefixed(digest.to_hex().as_bytes()),
                None => encoder.length_prefixed(b""),
            },
            EntryKind::Symlink => {
                encoder.length_prefixed(entry.target.unwrap_or("").as_bytes());
            }
            EntryKind::Dir => {}
        }
    }
    encoder.finalize().to_hex().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::statcache::FileStat;

    /// What the walk found, which the digest does not look at.
    static NODE: Node = Node {
        kind: EntryKind::File,
        mode: 0,
        size: 0,
        target: None,
        stat: FileStat {
            size: 0,
            mtime_ns: 0,
            ctime_ns: 0,
            inode: 0,
            device: 0,
            mode: 0,
        },
    };

    fn file<'t>(name: &'t str, source: &'t str, mode: u32, content: &[u8]) -> SelectedEntry<'t> {
        SelectedEntry {
            source,
            name,
            kind: EntryKind::File,
            mode,
            size: content.len() as u64,
            digest: Some(blake3::hash(content)),
            target: None,
            node: &NODE,
        }
    }

    #[test]
    fn the_digest_ignores_the_source_path_but_not_name_mode_or_content() {
        let base = entries_digest(&[file("a", "x/a", 0o644, b"1")]);
        assert_eq!(
            base,
            entries_digest(&[file("a", "elsewhere/a", 0o644, b"1")])
        );
        assert_ne!(base, entries_digest(&[file("b", "x/a", 0o644, b"1")]));
        assert_ne!(base, entries_digest(&[file("a", "x/a", 0o755, b"1")]));
        assert_ne!(base, entries_digest(&[file("a", "x/a", 0o644, b"2")]));
        assert_ne!(base, entries_digest(&[]));
    }

    #[test]
    fn the_encoding_is_unambiguous_across_field_boundaries() {
        let link = |name: &'static str, target: &'static str| SelectedEntry {
            source: name,
            name,
            kind: EntryKind::Symlink,
            mode: 0o777,
            size: 0,
            digest: None,
            target: Some(target),
            node: &NODE,
        };
        assert_ne!(
            entries_digest(&[link("ab", "c")]),
            entries_digest(&[link("a", "bc")])
        );
        let dir = SelectedEntry {
            kind: EntryKind::Dir,
            target: None,
            ..link("a", "")
        };
        assert_ne!(entries_digest(&[dir]), entries_digest(&[link("a", "")]));
    }

    #[test]
    fn big_and_small_files_hash_like_blake3_of_their_content(
    ) -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let small = dir.path().join("small");
        let big = dir.path().join("big");
        std::fs::write(&small, b"small")?;
        let big_content: Vec<u8> = (0..(MMAP_THRESHOLD + 12345))
            .map(|i| (i % 251) as u8)
            .collect();
        std::fs::write(&big, &big_content)?;
        assert_eq!(hash_file(&small)?.hash, blake3::hash(b"small"));
        let big_digest = hash_file(&big)?;
        assert_eq!(big_digest.hash, blake3::hash(&big_content));
        assert_eq!(big_digest.size, big_content.len() as u64);
        let missing = hash_file(&dir.path().join("missing"))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(missing.contains("missing"), "{missing}");
        Ok(())
    }

    #[test]
    fn racy_entries_are_read_again_and_recorded_anew_or_dropped(
    ) -> Result<(), Box<dyn std::error::Error>> {
        use crate::dockerignore::IgnoreRules;
        use crate::statcache::{encode, RACY_WINDOW_NS};
        let dir = tempfile::tempdir()?;
        std::fs::write(dir.path().join("read"), b"new")?;
        std::fs::write(dir.path().join("unread"), b"other")?;
        let tree = ContextTree::scan(dir.path(), &IgnoreRules::default())?;
        let node = |path: &str| tree.get(path).ok_or(format!("no {path}"));
        let (read, unread) = (node("read")?, node("unread")?);
        // A cache written in the same tick as the files: same stats, but the digests are of
        // what they held before a rewrite the stats cannot show.
        let written_at = read.stat.mtime_ns.max(unread.stat.mtime_ns);
        let stale = *blake3::hash(b"old").as_bytes();
        let bytes = encode(
            written_at,
            vec![("read", read.stat, stale), ("unread", unread.stat, stale)].into_iter(),
        );
        let cache = StatCache::parse(&bytes)?;
        let hashed = hash_files(&tree, vec![("read", read)], &cache)?;
        assert_eq!((hashed.n_read, hashed.n_cached), (1, 0));
        // Recorded by a run that started after the window, so that the new entry is trusted.
        let started_ns = written_at + RACY_WINDOW_NS + 1;
        let updated = updated_cache(&tree, &hashed, &cache, started_ns).ok_or("not rewritten")?;
        let updated = StatCache::parse(&updated)?;
        let mut reader = updated.reader();
        assert_eq!(
            reader.lookup("read", &read.stat),
            Some(*blake3::hash(b"new").as_bytes())
        );
        // Carried over under the new write time, the unread racy entry would vouch for a
        // digest that may be stale: it is dropped, and read on the next run.
        assert_eq!(updated.len(), 1);
        // Nothing read, but a racy entry: still rewritten, to drop it.
        let nothing_read = hash_files(&tree, Vec::new(), &cache)?;
        let rewritten = updated_cache(&tree, &nothing_read, &cache, started_ns)
            .ok_or("a cache with racy entries was kept")?;
        assert_eq!(StatCache::parse(&rewritten)?.len(), 0);
        Ok(())
    }

    #[test]
    fn a_file_swapped_for_a_link_fifo_or_directory_is_an_error_naming_it(
    ) -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        std::fs::write(dir.path().join("real"), b"real")?;
        std::os::unix::fs::symlink("real", dir.path().join("link"))?;
        std::fs::create_dir(dir.path().join("dir"))?;
        let fifo = dir.path().join("fifo");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status()?;
        assert!(made.success());
        for (name, found) in [
            ("link", "now a symlink"),
            ("fifo", "now a special file"),
            ("dir", "now a directory"),
        ] {
            // A fifo opened for reading without O_NONBLOCK would wait here for a writer.
            let error = hash_file(&dir.path().join(name))
                .err()
                .map(|error| error.to_string())
                .unwrap_or_default();
            assert!(
                error.starts_with(&format!("{}: ", dir.path().join(name).display()))
                    && error.contains(found),
                "{name}: {error}"
            );
        }
        assert_eq!(
            hash_file(&dir.path().join("real"))?.hash,
            blake3::hash(b"real")
        );
        Ok(())
    }
}
