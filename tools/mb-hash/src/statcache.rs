//! The stat cache: what each file of a context looked like (size, times, inode, device, mode)
//! when its content was last hashed, so that an unchanged file is never read again.
//!
//! One file per context directory, in the store's `stat-cache/`, named by a hash of the
//! context's canonical path. Only the cache file's location depends on that path: entries are
//! keyed by context-relative path, and digests never depend on where the context is, so a moved
//! checkout gets a fresh (cold) cache and the same digests.
//!
//! # Racily clean entries
//!
//! A file changed in the same timestamp tick as it was hashed keeps the stat that was
//! recorded, so its stat alone cannot prove it unchanged. As git does with its index, an entry
//! whose mtime is not older than the run that wrote the cache (less [`RACY_WINDOW_NS`], which
//! covers the kernel's coarse timestamp clock and filesystems with up to 2 s granularity) is
//! not trusted: the file is read again on the next run, which then records it with a later
//! write time, so the entry settles after one extra read.
//!
//! # Format
//!
//! Little-endian, loaded in one read and checked before use; anything that does not check out
//! is ignored (a cold run rebuilds it), never fatal:
//!
//! ```text
//! "mbstat\0\x01"                       magic and version
//! i64 written_at_ns                    wall clock when the writing run started its walk
//! u64 number of entries
//! per entry: u32 path length, path (UTF-8, context-relative),
//!            u64 size, i64 mtime_ns, i64 ctime_ns, u64 inode, u64 device, u32 st_mode,
//!            32 bytes BLAKE3 of the content
//! 32 bytes BLAKE3 of everything before it
//! ```
//!
//! Writers rename a complete file into place, so concurrent runs never see a torn cache; the
//! last writer wins.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use mb_core::store::Store;

use crate::error::HashError;
use crate::sorted::{Cursor, SortedMap};

const MAGIC: &[u8; 8] = b"mbstat\0\x01";
const HEADER_LEN: usize = 8 + 8 + 8;
const CHECKSUM_LEN: usize = 32;
/// Everything of an entry but its path.
const ENTRY_FIXED_LEN: usize = 4 + 8 + 8 + 8 + 8 + 8 + 4 + 32;

/// How much older than the cache an entry's mtime must be to be trusted, in nanoseconds.
pub const RACY_WINDOW_NS: i64 = 2_000_000_000;

/// The parts of a file's stat that change when its content may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FileStat {
    /// `st_size`.
    pub size: u64,
    /// `st_mtime` in nanoseconds since the epoch.
    pub mtime_ns: i64,
    /// `st_ctime` in nanoseconds since the epoch.
    pub ctime_ns: i64,
    /// `st_ino`.
    pub inode: u64,
    /// `st_dev`.
    pub device: u64,
    /// `st_mode`, type bits included.
    pub mode: u32,
}

impl FileStat {
    /// The fields of `stat`.
    // The field types of `struct stat` differ between architectures; on some the casts are
    // no-ops.
    #[allow(clippy::unnecessary_cast)]
    pub fn of(stat: &rustix::fs::Stat) -> FileStat {
        FileStat {
            size: stat.st_size as u64,
            mtime_ns: stat.st_mtime as i64 * 1_000_000_000 + stat.st_mtime_nsec as i64,
            ctime_ns: stat.st_ctime as i64 * 1_000_000_000 + stat.st_ctime_nsec as i64,
            inode: stat.st_ino as u64,
            device: stat.st_dev as u64,
            mode: stat.st_mode as u32,
        }
    }
}

/// The wall clock in nanoseconds since the epoch, the unit of [`FileStat`] times.
pub fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_nanos() as i64)
}

/// Where the cache of the context at canonical path `root` lives in `store`.
pub fn cache_path(store: &Store, root: &Path) -> PathBuf {
    let key = blake3::hash(root.as_os_str().as_encoded_bytes()).to_hex();
    store
        .stat_cache_dir()
        .join(format!("{}.bin", &key.as_str()[..32]))
}

/// Reads the cache file at `path`: empty when missing or unreadable.
pub fn read(path: &Path) -> Vec<u8> {
    match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(error) => {
            if error.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!("ignoring unreadable stat cache {}: {error}", path.display());
            }
            Vec::new()
        }
    }
}

/// A loaded cache, borrowing its paths from the file's bytes.
#[derive(Debug, Default)]
pub struct StatCache<'a> {
    written_at_ns: i64,
    entries: SortedMap<'a, (FileStat, [u8; 32])>,
}

/// Why cache bytes were refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Corrupt(&'static str);

impl std::fmt::Display for Corrupt {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(self.0)
    }
}

impl std::error::Error for Corrupt {}

/// A cursor over cache bytes that fails instead of panicking on short input.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, len: usize) -> Result<&'a [u8], Corrupt> {
        if self.bytes.len() < len {
            return Err(Corrupt("truncated entry"));
        }
        let (taken, rest) = self.bytes.split_at(len);
        self.bytes = rest;
        Ok(taken)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], Corrupt> {
        let mut array = [0; N];
        array.copy_from_slice(self.take(N)?);
        Ok(array)
    }

    fn u32(&mut self) -> Result<u32, Corrupt> {
        self.array().map(u32::from_le_bytes)
    }

    fn u64(&mut self) -> Result<u64, Corrupt> {
        self.array().map(u64::from_le_bytes)
    }

    fn i64(&mut self) -> Result<i64, Corrupt> {
        self.array().map(i64::from_le_bytes)
    }
}

impl<'a> StatCache<'a> {
    /// Parses cache bytes; empty bytes are an empty cache.
    pub fn parse(bytes: &'a [u8]) -> Result<StatCache<'a>, Corrupt> {
        if bytes.is_empty() {
            return Ok(StatCache::default());
        }
        if bytes.len() < HEADER_LEN + CHECKSUM_LEN || !bytes.starts_with(MAGIC) {
            return Err(Corrupt("not a stat cache of this version"));
        }
        let (body, checksum) = bytes.split_at(bytes.len() - CHECKSUM_LEN);
        if blake3::hash(body).as_bytes() != checksum {
            return Err(Corrupt("checksum mismatch"));
        }
        let mut reader = Reader {
            bytes: &body[MAGIC.len()..],
        };
        let written_at_ns = reader.i64()?;
        let n_entries = reader.u64()?;
        if n_entries > (body.len() / ENTRY_FIXED_LEN) as u64 {
            return Err(Corrupt("more entries than bytes"));
        }
        let mut entries = Vec::with_capacity(n_entries as usize);
        for _ in 0..n_entries {
            let path_len = reader.u32()? as usize;
            let path = std::str::from_utf8(reader.take(path_len)?)
                .map_err(|_| Corrupt("a path is not UTF-8"))?;
            let stat = FileStat {
                size: reader.u64()?,
                mtime_ns: reader.i64()?,
                ctime_ns: reader.i64()?,
                inode: reader.u64()?,
                device: reader.u64()?,
                mode: reader.u32()?,
            };
            entries.push((path, (stat, reader.array()?)));
        }
        if !reader.bytes.is_empty() {
            return Err(Corrupt("trailing bytes"));
        }
        Ok(StatCache {
            written_at_ns,
            entries: SortedMap::from_sorted(entries)
                .ok_or(Corrupt("paths out of order or repeated"))?,
        })
    }

    /// The number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// A reader for lookups, fastest in path order.
    pub fn reader(&self) -> CacheReader<'_, 'a> {
        CacheReader {
            written_at_ns: self.written_at_ns,
            entries: self.entries.cursor(),
        }
    }
}

/// One reader's lookups in a [`StatCache`].
pub struct CacheReader<'c, 'a> {
    written_at_ns: i64,
    entries: Cursor<'c, 'a, (FileStat, [u8; 32])>,
}

impl CacheReader<'_, '_> {
    /// The digest recorded for `path` if the file still has exactly `stat` and the entry is
    /// not racily clean.
    pub fn lookup(&mut self, path: &str, stat: &FileStat) -> Option<[u8; 32]> {
        let (cached_stat, digest) = self.entries.get(path)?;
        let racy = cached_stat.mtime_ns >= self.written_at_ns - RACY_WINDOW_NS;
        (cached_stat == stat && !racy).then_some(*digest)
    }
}

/// Encodes a cache of `entries` (context-relative path, stat, digest), sorted by path, written
/// by a run that started at `written_at_ns`.
pub fn encode<'a>(
    written_at_ns: i64,
    entries: impl ExactSizeIterator<Item = (&'a str, FileStat, [u8; 32])>,
) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(HEADER_LEN + entries.len() * (ENTRY_FIXED_LEN + 32));
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&written_at_ns.to_le_bytes());
    bytes.extend_from_slice(&(entries.len() as u64).to_le_bytes());
    for (path, stat, digest) in entries {
        bytes.extend_from_slice(&(path.len() as u32).to_le_bytes());
        bytes.extend_from_slice(path.as_bytes());
        bytes.extend_from_slice(&stat.size.to_le_bytes());
        bytes.extend_from_slice(&stat.mtime_ns.to_le_bytes());
        bytes.extend_from_slice(&stat.ctime_ns.to_le_bytes());
        bytes.extend_from_slice(&stat.inode.to_le_bytes());
        bytes.extend_from_slice(&stat.device.to_le_bytes());
        bytes.extend_from_slice(&stat.mode.to_le_bytes());
        bytes.extend_from_slice(&digest);
    }
    let checksum = blake3::hash(&bytes);
    bytes.extend_from_slice(checksum.as_bytes());
    bytes
}

/// Replaces the cache file at `path` with `bytes`: written under the store's `tmp/` and renamed
/// into place. Not synced: a cache lost or torn by a crash fails its checksum and costs one
/// cold run, which is cheaper than an fsync on every build.
pub fn write(store: &Store, path: &Path, bytes: &[u8]) -> Result<(), HashError> {
    let tmp_dir = store.tmp_dir();
    let mut file = tempfile::NamedTempFile::new_in(&tmp_dir).map_err(HashError::io(&tmp_dir))?;
    file.write_all(bytes).map_err(HashError::io(file.path()))?;
    file.persist(path)
        .map_err(|error| HashError::io(path)(error.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stat(mtime_ns: i64) -> FileStat {
        FileStat {
            size: 5,
            mtime_ns,
            ctime_ns: mtime_ns,
            inode: 42,
            device: 7,
            mode: 0o100644,
        }
    }

    const WRITTEN_AT: i64 = 1_000 * 1_000_000_000;
    const OLD: i64 = WRITTEN_AT - 60 * 1_000_000_000;

    fn sample() -> Vec<u8> {
        encode(
            WRITTEN_AT,
            vec![
                ("a.txt", stat(OLD), [1; 32]),
                ("dir/ü.rs", stat(OLD), [2; 32]),
                ("fresh", stat(WRITTEN_AT - 10), [3; 32]),
            ]
            .into_iter(),
        )
    }

    #[test]
    fn entries_round_trip_and_match_only_the_same_stat() -> Result<(), Corrupt> {
        let bytes = sample();
        let cache = StatCache::parse(&bytes)?;
        assert_eq!(cache.len(), 3);
        let mut cache = cache.reader();
        assert_eq!(cache.lookup("a.txt", &stat(OLD)), Some([1; 32]));
        assert_eq!(cache.lookup("dir/ü.rs", &stat(OLD)), Some([2; 32]));
        assert_eq!(cache.lookup("missing", &stat(OLD)), None);
        assert_eq!(cache.lookup("a.txt", &stat(OLD + 1)), None);
        for changed in [
            FileStat {
                size: 6,
                ..stat(OLD)
            },
            FileStat {
                ctime_ns: OLD + 1,
                ..stat(OLD)
            },
            FileStat {
                inode: 43,
                ..stat(OLD)
            },
            FileStat {
                device: 8,
                ..stat(OLD)
            },
            FileStat {
                mode: 0o100755,
                ..stat(OLD)
            },
        ] {
            assert_eq!(cache.lookup("a.txt", &changed), None, "{changed:?}");
        }
        Ok(())
    }

    #[test]
    fn racily_clean_entries_are_not_trusted() -> Result<(), Corrupt> {
        let bytes = encode(
            WRITTEN_AT,
            vec![
                ("edge", stat(WRITTEN_AT - RACY_WINDOW_NS), [4; 32]),
                ("fresh", stat(WRITTEN_AT - 10), [3; 32]),
                ("future", stat(WRITTEN_AT + 1), [6; 32]),
                ("settled", stat(WRITTEN_AT - RACY_WINDOW_NS - 1), [5; 32]),
            ]
            .into_iter(),
        );
        let cache = StatCache::parse(&bytes)?;
        let mut cache = cache.reader();
        assert_eq!(cache.lookup("fresh", &stat(WRITTEN_AT - 10)), None);
        assert_eq!(
            cache.lookup("edge", &stat(WRITTEN_AT - RACY_WINDOW_NS)),
            None
        );
        assert_eq!(
            cache.lookup("settled", &stat(WRITTEN_AT - RACY_WINDOW_NS - 1)),
            Some([5; 32])
        );
        assert_eq!(cache.lookup("future", &stat(WRITTEN_AT + 1)), None);
        Ok(())
    }

    #[test]
    fn empty_bytes_are_an_empty_cache_and_damage_is_refused() {
        assert!(StatCache::parse(&[]).is_ok_and(|cache| cache.is_empty()));
        let bytes = sample();
        assert_eq!(
            StatCache::parse(&bytes[..bytes.len() - 1]).err(),
            Some(Corrupt("checksum mismatch"))
        );
        let mut flipped = bytes.clone();
        flipped[HEADER_LEN + 6] ^= 1;
        assert_eq!(
            StatCache::parse(&flipped).err(),
            Some(Corrupt("checksum mismatch"))
        );
        assert!(StatCache::parse(b"garbage").is_err());
        let unsorted = encode(
            WRITTEN_AT,
            vec![("b", stat(OLD), [1; 32]), ("a", stat(OLD), [2; 32])].into_iter(),
        );
        assert_eq!(
            StatCache::parse(&unsorted).err(),
            Some(Corrupt("paths out of order or repeated"))
        );
        let mut other_version = bytes;
        other_version[7] = 2;
        assert!(StatCache::parse(&other_version).is_err());
    }

    #[test]
    fn a_valid_checksum_over_inconsistent_entries_is_still_refused() {
        let mut body = MAGIC.to_vec();
        body.extend_from_slice(&WRITTEN_AT.to_le_bytes());
        body.extend_from_slice(&1u64.to_le_bytes());
        body.extend_from_slice(&1000u32.to_le_bytes());
        body.extend_from_slice(&[b'x'; ENTRY_FIXED_LEN]);
        let checksum = blake3::hash(&body);
        body.extend_from_slice(checksum.as_bytes());
        assert_eq!(
            StatCache::parse(&body).err(),
            Some(Corrupt("truncated entry"))
        );
    }

    #[test]
    fn the_cache_file_depends_on_the_context_path() -> Result<(), mb_core::CoreError> {
        let dir = tempfile::tempdir().map_err(mb_core::CoreError::io("tempdir"))?;
        let store = Store::open(dir.path().join("store"))?;
        let here = cache_path(&store, Path::new("/src/app"));
        assert_eq!(here, cache_path(&store, Path::new("/src/app")));
        assert_ne!(here, cache_path(&store, Path::new("/elsewhere/app")));
        assert!(here.starts_with(store.stat_cache_dir()));
        Ok(())
    }
}
