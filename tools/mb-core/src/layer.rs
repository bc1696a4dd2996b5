//! Layer blobs: tar archives in sorted order, gzip-compressed by default (zstd or none on
//! request), with extended attributes as PAX `SCHILY.xattr.*` records and the diff id
//! (digest of the tar) and the blob digest computed in the same single pass that writes them.
//!
//! Writing is one pass over the files, on two threads plus compression workers: the caller's
//! thread reads files into the tar stream (and whatever checks its reader does), a second one
//! hashes that stream for the diff id, compresses it and hashes and writes the blob (see
//! `Handoff`); zstd compresses on as many workers as the machine has cores (see `zstd_workers`
//! for why that keeps blobs reproducible). Bytes move in 1 MiB pieces, so syscalls and per-call
//! costs stay small beside the work on the bytes.
//!
//! Also the two conversions between a directory and a layer that overlayfs needs:
//! [`write_tree`] turns an overlay upper directory (or any root filesystem) into a layer,
//! mapping overlay whiteouts (0/0 character devices, `trusted.overlay.opaque`) to OCI whiteouts
//! (`.wh.<name>`, `.wh..wh..opq`); [`unpack`] does the reverse, so that an unpacked layer can be
//! an overlay lower directory as it is.

use std::collections::HashMap;
use std::ffi::{CString, OsStr};
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::thread::JoinHandle;

use flate2::write::GzEncoder;
use serde::{Deserialize, Serialize};

use crate::digest::{HashingWriter, VerifyingReader};
use crate::error::CoreError;
use crate::image::media_type;
use crate::plan::LayerRef;
use crate::store::{BlobWriter, Store};

/// The prefix OCI layers use to mark a deleted file.
pub const WHITEOUT_PREFIX: &str = ".wh.";
/// The entry OCI layers use to mark a directory whose lower contents are hidden.
pub const OPAQUE_MARKER: &str = ".wh..wh..opq";
/// The xattr overlayfs sets on an opaque directory.
const OVERLAY_OPAQUE_XATTR: &str = "trusted.overlay.opaque";
/// The prefix of overlayfs's own xattrs, which describe the overlay, not the file.
const OVERLAY_XATTR_PREFIX: &str = "trusted.overlay.";
/// The OCI media type of a zstd-compressed layer.
pub const LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
/// The zstd level layers are written with: the zstd tool's default.
const ZSTD_LEVEL: i32 = 3;
/// How much of the tar stream is gathered (file contents read straight into it) before it is
/// handed over to be hashed and compressed: large enough that syscalls and per-call overheads
/// vanish against the work on the bytes, small enough to stay in cache.
const COPY_CHUNK: usize = 1 << 20;
/// Chunks in flight between the two threads: enough to ride out a slow write or a burst of small
/// files, few enough to bound memory to a few MiB.
const CHUNKS_IN_FLIGHT: usize = 4;

/// How many threads compress a zstd layer: one per core.
///
/// The blob is the same whatever this number is: libzstd's streaming multithreaded mode cuts the
/// input into jobs by size alone (the job size follows from the level, never from the worker
/// count) and emits them in order, so any count of 1 or more gives the same bytes. Only 0 (the
/// single-threaded mode) would give different ones, which is why the count is never 0: a 1-core
/// machine and a 64-core one write the same digest for the same files. The test
/// `zstd_blobs_do_not_depend_on_the_number_of_workers` holds this to it.
fn zstd_workers() -> u32 {
    std::thread::available_parallelism()
        .map_or(1, std::num::NonZeroUsize::get)
        .try_into()
        .unwrap_or(u32::MAX)
        .max(1)
}

/// How a layer blob is compressed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Compression {
    /// gzip, the default that every registry and runtime reads.
    #[default]
    Gzip,
    /// zstd: faster to write and read than gzip, for registries and runtimes that know it.
    Zstd,
    /// No compression.
    None,
}

impl Compression {
    /// The OCI media type of a layer compressed this way.
    pub fn media_type(self) -> &'static str {
        match self {
            Compression::Gzip => media_type::LAYER_GZIP,
            Compression::Zstd => LAYER_ZSTD,
            Compression::None => media_type::LAYER_TAR,
        }
    }

    /// The compression a layer media type implies.
    pub fn from_media_type(media_type: &str) -> Option<Compression> {
        if media_type.ends_with("tar+gzip") || media_type.ends_with("tar.gzip") {
            Some(Compression::Gzip)
        } else if media_type.ends_with("tar+zstd") {
            Some(Compression::Zstd)
        } else if media_type.ends_with(".tar") {
            Some(Compression::None)
        } else {
            None
        }
    }
}

enum Sink {
    Gzip(GzEncoder<BlobWriter>),
    Zstd(zstd::Encoder<'static, BlobWriter>),
    Plain(BlobWriter),
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Sink::Gzip(encoder) => encoder.write(buf),
            Sink::Zstd(encoder) => encoder.write(buf),
            Sink::Plain(writer) => writer.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Sink::Gzip(encoder) => encoder.flush(),
            Sink::Zstd(encoder) => encoder.flush(),
            Sink::Plain(writer) => writer.flush(),
        }
    }
}

/// Passes what is written to it, in [`COPY_CHUNK`] pieces, to a thread of its own that writes
/// them into `W`: the hashing, compressing and writing done by `W` then overlap with the reading
/// done by the writer's caller. Chunk buffers come back to be reused, so steady state allocates
/// nothing.
///
/// An error of `W` surfaces at the next write or at [`Handoff::finish`]. Dropping a `Handoff`
/// waits for the thread, so `W` (and the temporary blob file it holds) is gone when it returns.
struct Handoff<W: Write + Send + 'static> {
    /// The chunk being filled.
    chunk: Vec<u8>,
    sender: Option<SyncSender<Vec<u8>>>,
    /// Emptied chunks coming back.
    returned: Receiver<Vec<u8>>,
    thread: Option<JoinHandle<io::Result<W>>>,
}

impl<W: Write + Send + 'static> Handoff<W> {
    fn new(mut inner: W) -> io::Result<Handoff<W>> {
        let (sender, received) = mpsc::sync_channel::<Vec<u8>>(CHUNKS_IN_FLIGHT);
        let (give_back, returned) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("layer-writer".to_string())
            .spawn(move || {
                for mut chunk in received {
                    inner.write_all(&chunk)?;
                    chunk.clear();
                    // The other side is gone only when it stopped writing anyway.
                    let _ = give_back.send(chunk);
                }
                Ok(inner)
            })?;
        Ok(Handoff {
            chunk: Vec::with_capacity(COPY_CHUNK),
            sender: Some(sender),
            returned,
            thread: Some(thread),
        })
    }

    /// Reads at most `limit` bytes from `reader` straight into the stream, without copying them
    /// through another buffer first; Ok(0) at the reader's end.
    fn read_from(&mut self, reader: &mut impl Read, limit: usize) -> io::Result<usize> {
        if self.chunk.len() == self.chunk.capacity() {
            self.send_chunk()?;
        }
        let start = self.chunk.len();
        let end = start + limit.min(self.chunk.capacity() - start);
        // Zeroing first keeps this safe Rust; it costs a fraction of the read's own copy.
        self.chunk.resize(end, 0);
        let n_read = loop {
            match reader.read(&mut self.chunk[start..end]) {
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                other => break other,
            }
        };
        self.chunk.truncate(start + *n_read.as_ref().unwrap_or(&0));
        n_read
    }

    fn send_chunk(&mut self) -> io::Result<()> {
        let next = self
            .returned
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(COPY_CHUNK));
        let full = std::mem::replace(&mut self.chunk, next);
        let sent = self.sender.as_ref().map(|sender| sender.send(full));
        match sent {
            Some(Ok(())) => Ok(()),
            // The thread stopped: its error says why.
            _ => self.join().and(Err(io::ErrorKind::BrokenPipe.into())),
        }
    }

    fn join(&mut self) -> io::Result<W> {
        self.sender = None;
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(outcome)) => outcome,
            Some(Err(_)) => Err(io::Error::other("the layer writing thread panicked")),
            None => Err(io::Error::other("the layer writing thread already ended")),
        }
    }

    /// Sends what is left and returns `W` once everything is written into it.
    fn finish(mut self) -> io::Result<W> {
        if !self.chunk.is_empty() {
            self.send_chunk()?;
        }
        self.join()
    }
}

impl<W: Write + Send + 'static> Write for Handoff<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.chunk.len() == self.chunk.capacity() {
            self.send_chunk()?;
        }
        let n_taken = buf.len().min(self.chunk.capacity() - self.chunk.len());
        self.chunk.extend_from_slice(&buf[..n_taken]);
        Ok(n_taken)
    }

    /// Flushing is left to [`Handoff::finish`]: a zstd flush would end a compression job early
    /// and change the blob.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<W: Write + Send + 'static> Drop for Handoff<W> {
    fn drop(&mut self) {
        if self.thread.is_some() {
            let _ = self.join();
        }
    }
}

/// Ownership, permissions and time of an entry written into a layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryMeta {
    /// Permission bits, including setuid/setgid/sticky.
    pub mode: u32,
    /// Owner.
    pub uid: u64,
    /// Group.
    pub gid: u64,
    /// Modification time, seconds since the epoch.
    pub mtime: u64,
}

impl EntryMeta {
    /// Metadata of a file on disk, with mtime clamped to `clamp_mtime` when given.
    pub fn from_metadata(metadata: &fs::Metadata, clamp_mtime: Option<u64>) -> EntryMeta {
        let mtime = metadata.mtime().max(0) as u64;
        EntryMeta {
            mode: metadata.permissions().mode() & 0o7777,
            uid: u64::from(metadata.uid()),
            gid: u64::from(metadata.gid()),
            mtime: clamp_mtime.map_or(mtime, |clamp| mtime.min(clamp)),
        }
    }
}

/// Streams tar entries into a new layer blob in the store.
pub struct LayerWriter {
    builder: tar::Builder<Handoff<HashingWriter<Sink>>>,
    compression: Compression,
}

impl LayerWriter {
    /// Starts a layer blob in `store`.
    pub fn new(store: &Store, compression: Compression) -> Result<LayerWriter, CoreError> {
        LayerWriter::with_sink(Sink::open(store, compression, zstd_workers())?, compression)
    }

    fn with_sink(sink: Sink, compression: Compression) -> Result<LayerWriter, CoreError> {
        let handoff = Handoff::new(HashingWriter::new(sink)).map_err(Self::io_error)?;
        let mut builder = tar::Builder::new(handoff);
        builder.mode(tar::HeaderMode::Complete);
        builder.follow_symlinks(false);
        Ok(LayerWriter {
            builder,
            compression,
        })
    }

    fn header(kind: tar::EntryType, meta: EntryMeta, size: u64) -> tar::Header {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(kind);
        header.set_mode(meta.mode);
        header.set_uid(meta.uid);
        header.set_gid(meta.gid);
        header.set_mtime(meta.mtime);
        header.set_size(size);
        header
    }

    fn io_error(error: io::Error) -> CoreError {
        CoreError::io("<layer>")(error)
    }

    /// Adds a directory.
    pub fn dir(&mut self, path: &str, meta: EntryMeta) -> Result<(), CoreError> {
        let mut header = Self::header(tar::EntryType::Directory, meta, 0);
        let name = format!("{}/", path.trim_end_matches('/'));
        self.builder
            .append_data(&mut header, name, io::empty())
            .map_err(Self::io_error)
    }

    /// Adds a regular file with the first `size` bytes read from `content`; content that ends
    /// before `size` bytes is an [`io::ErrorKind::UnexpectedEof`] error (the file shrank after it
    /// was measured), and the layer must then be dropped.
    pub fn file(
        &mut self,
        path: &str,
        meta: EntryMeta,
        size: u64,
        mut content: impl Read,
    ) -> Result<(), CoreError> {
        let mut header = Self::header(tar::EntryType::Regular, meta, size);
        // The tar crate would copy the body 8 KiB at a time; given no body, it writes the header
        // (and any long-name entry before it) alone, and the body is read in here.
        self.builder
            .append_data(&mut header, path, io::empty())
            .map_err(Self::io_error)?;
        let tar = self.builder.get_mut();
        let mut remaining = size;
        while remaining > 0 {
            let limit = usize::try_from(remaining).unwrap_or(usize::MAX);
            match tar.read_from(&mut content, limit).map_err(Self::io_error)? {
                0 => {
                    return Err(Self::io_error(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("{path} ended {remaining} bytes short of its size {size}"),
                    )))
                }
                n_read => remaining -= n_read as u64,
            }
        }
        let padding = (512 - size % 512) % 512;
        tar.write_all(&[0; 512][..padding as usize])
            .map_err(Self::io_error)
    }

    /// Adds a symbolic link.
    pub fn symlink(&mut self, path: &str, target: &Path, meta: EntryMeta) -> Result<(), CoreError> {
        let mut header = Self::header(tar::EntryType::Symlink, meta, 0);
        self.builder
            .append_link(&mut header, path, target)
            .map_err(Self::io_error)
    }

    /// Adds a hard link to an entry written earlier in this layer.
    pub fn hardlink(&mut self, path: &str, target: &str, meta: EntryMeta) -> Result<(), CoreError> {
        let mut header = Self::header(tar::EntryType::Link, meta, 0);
        self.builder
            .append_link(&mut header, path, target)
            .map_err(Self::io_error)
    }

    /// Adds a character or block device or a fifo.
    pub fn special(
        &mut self,
        path: &str,
        kind: tar::EntryType,
        meta: EntryMeta,
        device: (u32, u32),
    ) -> Result<(), CoreError> {
        let mut header = Self::header(kind, meta, 0);
        header.set_device_major(device.0).map_err(Self::io_error)?;
        header.set_device_minor(device.1).map_err(Self::io_error)?;
        self.builder
            .append_data(&mut header, path, io::empty())
            .map_err(Self::io_error)
    }

    /// Gives the next entry extended attributes, as a PAX header of `SCHILY.xattr.<name>`
    /// records (what GNU tar, BuildKit and the tar crate's unpacking read).
    pub fn xattrs(&mut self, path: &str, xattrs: &[(String, Vec<u8>)]) -> Result<(), CoreError> {
        if xattrs.is_empty() {
            return Ok(());
        }
        let mut records = Vec::new();
        for (name, value) in xattrs {
            records.extend(pax_record(&format!("SCHILY.xattr.{name}"), value));
        }
        let mut header = Self::header(
            tar::EntryType::XHeader,
            EntryMeta {
                mode: 0o644,
                uid: 0,
                gid: 0,
                mtime: 0,
            },
            records.len() as u64,
        );
        let (_, name) = split_parent(path);
        let pax_name: String = format!("PaxHeaders/{name}").chars().take(99).collect();
        self.builder
            .append_data(&mut header, pax_name, records.as_slice())
            .map_err(Self::io_error)
    }

    /// Marks `path` as deleted.
    pub fn whiteout(&mut self, path: &str) -> Result<(), CoreError> {
        let (parent, name) = split_parent(path);
        let marker = join_relative(parent, &format!("{WHITEOUT_PREFIX}{name}"));
        self.file(
            &marker,
            EntryMeta {
                mode: 0o644,
                uid: 0,
                gid: 0,
                mtime: 0,
            },
            0,
            io::empty(),
        )
    }

    /// Marks directory `path` as opaque: nothing below it in lower layers shows through.
    pub fn opaque(&mut self, path: &str) -> Result<(), CoreError> {
        let marker = join_relative(path, OPAQUE_MARKER);
        self.file(
            &marker,
            EntryMeta {
                mode: 0o644,
                uid: 0,
                gid: 0,
                mtime: 0,
            },
            0,
            io::empty(),
        )
    }

    /// Finishes the tar and the compression and moves the blob into the store.
    pub fn finish(self) -> Result<LayerRef, CoreError> {
        let hashing = self
            .builder
            .into_inner()
            .and_then(Handoff::finish)
            .map_err(Self::io_error)?;
        Sink::finish(hashing, self.compression)
    }
}

impl Sink {
    /// A new blob in `store` that compresses what is written to it.
    fn open(store: &Store, compression: Compression, zstd_workers: u32) -> Result<Sink, CoreError> {
        let blob = store.blob_writer()?;
        Ok(match compression {
            // No file name and mtime 0 in the gzip header keep the blob reproducible.
            Compression::Gzip => Sink::Gzip(
                flate2::GzBuilder::new()
                    .mtime(0)
                    .write(blob, flate2::Compression::fast()),
            ),
            Compression::Zstd => {
                let mut encoder =
                    zstd::Encoder::new(blob, ZSTD_LEVEL).map_err(CoreError::io(store.tmp_dir()))?;
                encoder
                    .multithread(zstd_workers)
                    .map_err(CoreError::io(store.tmp_dir()))?;
                Sink::Zstd(encoder)
            }
            Compression::None => Sink::Plain(blob),
        })
    }

    /// Ends the compression and moves the blob into the store; the hashing around the sink saw
    /// the uncompressed tar, so its digest is the diff id.
    fn finish(
        hashing: HashingWriter<Sink>,
        compression: Compression,
    ) -> Result<LayerRef, CoreError> {
        let (sink, diff_id, _) = hashing.finish();
        let blob = match sink {
            Sink::Gzip(encoder) => encoder.finish().map_err(LayerWriter::io_error)?,
            Sink::Zstd(encoder) => encoder.finish().map_err(LayerWriter::io_error)?,
            Sink::Plain(blob) => blob,
        };
        let (digest, size) = blob.commit(None)?;
        Ok(LayerRef {
            digest,
            diff_id,
            size,
            media_type: compression.media_type().to_string(),
        })
    }
}

/// The uncompressed tar of a layer blob, verified against the layer's diff id as it is read
/// (the blob itself against its digest).
pub fn open_tar(store: &Store, layer: &LayerRef) -> Result<impl Read, CoreError> {
    let blob = store.open_blob(&layer.digest)?;
    let compression =
        Compression::from_media_type(&layer.media_type).ok_or_else(|| CoreError::Store {
            path: store.blob_path(&layer.digest),
            reason: format!("unsupported layer media type {}", layer.media_type),
        })?;
    let reader: Box<dyn Read> = match compression {
        Compression::Gzip => Box::new(flate2::read::GzDecoder::new(blob)),
        Compression::Zstd => Box::new(
            zstd::Decoder::new(blob).map_err(CoreError::io(store.blob_path(&layer.digest)))?,
        ),
        Compression::None => Box::new(blob),
    };
    Ok(VerifyingReader::new(reader, layer.diff_id.clone()))
}

/// The same layer compressed with `compression` (the layer itself when it already is): the
/// diff id stays, the blob digest and media type change.
pub fn recompress(
    store: &Store,
    layer: &LayerRef,
    compression: Compression,
) -> Result<LayerRef, CoreError> {
    if Compression::from_media_type(&layer.media_type) == Some(compression) {
        return Ok(layer.clone());
    }
    let mut tar = open_tar(store, layer)?;
    let blob_path = store.blob_path(&layer.digest);
    let mut handoff = Handoff::new(HashingWriter::new(Sink::open(
        store,
        compression,
        zstd_workers(),
    )?))
    .map_err(LayerWriter::io_error)?;
    while handoff
        .read_from(&mut tar, COPY_CHUNK)
        .map_err(CoreError::io(&blob_path))?
        > 0
    {}
    let hashing = handoff.finish().map_err(LayerWriter::io_error)?;
    Sink::finish(hashing, compression)
}

/// The tar entry type and device numbers of a character or block device or a fifo; None for
/// every other kind of file.
pub fn special_file(metadata: &fs::Metadata) -> Option<(tar::EntryType, (u32, u32))> {
    let file_type = metadata.file_type();
    let kind = if file_type.is_char_device() {
        tar::EntryType::Char
    } else if file_type.is_block_device() {
        tar::EntryType::Block
    } else if file_type.is_fifo() {
        tar::EntryType::Fifo
    } else {
        return None;
    };
    let rdev = metadata.rdev();
    let device = (
        nix::sys::stat::major(rdev) as u32,
        nix::sys::stat::minor(rdev) as u32,
    );
    Some((kind, device))
}

/// One PAX record: `<length> <key>=<value>\n`, where the length counts the whole record,
/// its own digits included.
fn pax_record(key: &str, value: &[u8]) -> Vec<u8> {
    let rest = key.len() + value.len() + 3;
    let mut length = rest + 1;
    while length != rest + length.to_string().len() {
        length = rest + length.to_string().len();
    }
    let mut record = format!("{length} {key}=").into_bytes();
    record.extend_from_slice(value);
    record.push(b'\n');
    record
}

/// The extended attributes of `path` (not following symlinks) that belong in a layer: all but
/// overlayfs's own.
pub fn read_xattrs(path: &Path) -> Vec<(String, Vec<u8>)> {
    let Ok(c_path) = CString::new(path.as_os_str().as_bytes()) else {
        return Vec::new();
    };
    // SAFETY: the path is NUL-terminated and the buffer's length is passed with it.
    let names = read_sized(|buffer, size| unsafe {
        libc::llistxattr(c_path.as_ptr(), buffer.cast(), size)
    });
    let Some(names) = names else {
        return Vec::new();
    };
    names
        .split(|&byte| byte == 0)
        .filter_map(|name| std::str::from_utf8(name).ok())
        .filter(|name| !name.is_empty() && !name.starts_with(OVERLAY_XATTR_PREFIX))
        .filter_map(|name| Some((name.to_string(), read_xattr(path, name)?)))
        .collect()
}

/// Reads what an `l*xattr` call returns, however long: asks for the size first (a call with a
/// null buffer and size 0), then reads into a buffer that size, and asks again if the value grew
/// in between (`ERANGE`). A fixed buffer would drop a long value or name list without a word:
/// file capabilities, ACLs and SELinux labels are each well under one, but `user.` values may
/// take up to 64 KiB. `None` when the call fails otherwise (no such attribute, no xattrs here).
fn read_sized(mut call: impl FnMut(*mut u8, usize) -> libc::ssize_t) -> Option<Vec<u8>> {
    loop {
        let size = call(std::ptr::null_mut(), 0);
        if size < 0 {
            return None;
        }
        // Most files have no xattrs at all: no second call for them.
        if size == 0 {
            return Some(Vec::new());
        }
        let mut buffer = vec![0u8; size as usize];
        let n_bytes = call(buffer.as_mut_ptr(), buffer.len());
        if n_bytes >= 0 {
            buffer.truncate(n_bytes as usize);
            return Some(buffer);
        }
        if io::Error::last_os_error().raw_os_error() != Some(libc::ERANGE) {
            return None;
        }
    }
}

/// Whether overlayfs marked a directory opaque (deleted and made again in the upper layer).
pub fn is_overlay_opaque(path: &Path) -> bool {
    matches!(
        read_xattr(path, OVERLAY_OPAQUE_XATTR).as_deref(),
        Some(b"y")
    )
}

/// Makes an overlayfs whiteout (a 0/0 character device) at `path`, hiding what lower layers
/// hold there. overlayfs itself refuses them, so a store on overlayfs (a container's own root,
/// say) fails here: the error says so and what to do.
pub fn make_overlay_whiteout(path: &Path) -> Result<(), CoreError> {
    nix::sys::stat::mknod(
        path,
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::empty(),
        0,
    )
    .map_err(|errno| match errno {
        nix::errno::Errno::EPERM => CoreError::Store {
            path: path.to_path_buf(),
            reason: format!(
                "cannot make an overlay whiteout (a 0/0 character device): {errno}; is the \
                 store on overlayfs, which refuses them? Put it on ext4, xfs, btrfs or tmpfs \
                 (--store or MEMOBUILD_STORE, e.g. on a volume)"
            ),
        },
        other => CoreError::io(path)(other.into()),
    })
}

/// Marks a directory opaque as overlayfs does, hiding what lower layers hold below it.
pub fn set_overlay_opaque(path: &Path) -> Result<(), CoreError> {
    set_xattr(path, OVERLAY_OPAQUE_XATTR, b"y")
}

fn read_xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    let (c_path, c_name) = c_strings(path, name).ok()?;
    // SAFETY: both strings are NUL-terminated and the buffer's length is passed with it.
    read_sized(|buffer, size| unsafe {
        libc::lgetxattr(c_path.as_ptr(), c_name.as_ptr(), buffer.cast(), size)
    })
}

/// Sets the extended attribute `name` of `path` (not following symlinks) to `value`.
pub fn set_xattr(path: &Path, name: &str, value: &[u8]) -> Result<(), CoreError> {
    let (c_path, c_name) = c_strings(path, name)?;
    // SAFETY: both strings are NUL-terminated and the value's length is passed with it.
    let status = unsafe {
        libc::lsetxattr(
            c_path.as_ptr(),
            c_name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if status == 0 {
        Ok(())
    } else {
        Err(CoreError::io(path)(io::Error::last_os_error()))
    }
}

/// Removes the extended attribute `name` of `path` (not following symlinks).
pub fn remove_xattr(path: &Path, name: &str) -> Result<(), CoreError> {
    let (c_path, c_name) = c_strings(path, name)?;
    // SAFETY: both strings are NUL-terminated.
    if unsafe { libc::lremovexattr(c_path.as_ptr(), c_name.as_ptr()) } == 0 {
        Ok(())
    } else {
        Err(CoreError::io(path)(io::Error::last_os_error()))
    }
}

/// The path and xattr name as C strings; a NUL inside either is an invalid-input error on `path`.
fn c_strings(path: &Path, name: &str) -> Result<(CString, CString), CoreError> {
    let invalid = |_| CoreError::io(path)(io::Error::from(io::ErrorKind::InvalidInput));
    Ok((
        CString::new(path.as_os_str().as_bytes()).map_err(invalid)?,
        CString::new(name).map_err(invalid)?,
    ))
}

fn split_parent(path: &str) -> (&str, &str) {
    let path = path.trim_end_matches('/');
    match path.rfind('/') {
        Some(slash) => (&path[..slash], &path[slash + 1..]),
        None => ("", path),
    }
}

fn join_relative(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        name.to_string()
    } else {
        format!("{parent}/{name}")
    }
}

/// Options for [`write_tree`].
#[derive(Debug, Clone, Copy, Default)]
pub struct TreeOptions {
    /// Clamp file times to this (SOURCE_DATE_EPOCH).
    pub clamp_mtime: Option<u64>,
    /// Translate overlayfs whiteouts and opaque directories into OCI whiteouts.
    pub overlay_whiteouts: bool,
    /// Asked before every entry and every read of a file's content: when it says the build is
    /// stopping, writing ends with an error there rather than at the end of the tree.
    pub stopping: Option<fn() -> bool>,
}

/// A file's content that fails as soon as `stopping` says so.
struct StoppableRead<R> {
    inner: R,
    stopping: Option<fn() -> bool>,
}

impl<R: Read> Read for StoppableRead<R> {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        check_stopping(self.stopping).map_err(io::Error::other)?;
        self.inner.read(buffer)
    }
}

/// The error [`write_tree`] ends with when asked to stop.
const STOPPING: &str = "the build is stopping";

fn check_stopping(stopping: Option<fn() -> bool>) -> Result<(), &'static str> {
    match stopping {
        Some(stopping) if stopping() => Err(STOPPING),
        _ => Ok(()),
    }
}

/// Writes everything below `root` into `layer`, in sorted order, with paths relative to `root`.
pub fn write_tree(
    layer: &mut LayerWriter,
    root: &Path,
    options: TreeOptions,
) -> Result<(), CoreError> {
    let mut hardlinks: HashMap<(u64, u64), String> = HashMap::new();
    write_dir_entries(layer, root, "", options, &mut hardlinks)
}

fn write_dir_entries(
    layer: &mut LayerWriter,
    dir: &Path,
    relative: &str,
    options: TreeOptions,
    hardlinks: &mut HashMap<(u64, u64), String>,
) -> Result<(), CoreError> {
    let mut names: Vec<_> = fs::read_dir(dir)
        .map_err(CoreError::io(dir))?
        .map(|entry| entry.map(|entry| entry.file_name()))
        .collect::<Result<_, _>>()
        .map_err(CoreError::io(dir))?;
    names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    for name in names {
        let path = dir.join(&name);
        check_stopping(options.stopping).map_err(|reason| CoreError::Store {
            path: path.clone(),
            reason: reason.to_string(),
        })?;
        let name_text = name.to_str().ok_or_else(|| CoreError::Store {
            path: path.clone(),
            reason: "file name is not UTF-8".to_string(),
        })?;
        let entry_relative = join_relative(relative, name_text);
        let metadata = fs::symlink_metadata(&path).map_err(CoreError::io(&path))?;
        let meta = EntryMeta::from_metadata(&metadata, options.clamp_mtime);
        let file_type = metadata.file_type();
        let is_whiteout =
            file_type.is_char_device() && options.overlay_whiteouts && metadata.rdev() == 0;
        if !is_whiteout {
            layer.xattrs(&entry_relative, &read_xattrs(&path))?;
        }
        if file_type.is_dir() {
            layer.dir(&entry_relative, meta)?;
            if options.overlay_whiteouts && is_overlay_opaque(&path) {
                layer.opaque(&entry_relative)?;
            }
            write_dir_entries(layer, &path, &entry_relative, options, hardlinks)?;
        } else if file_type.is_symlink() {
            let target = fs::read_link(&path).map_err(CoreError::io(&path))?;
            layer.symlink(&entry_relative, &target, meta)?;
        } else if file_type.is_file() {
            if metadata.nlink() > 1 {
                let inode = (metadata.dev(), metadata.ino());
                if let Some(first) = hardlinks.get(&inode) {
                    layer.hardlink(&entry_relative, first, meta)?;
                    continue;
                }
                hardlinks.insert(inode, entry_relative.clone());
            }
            let file = StoppableRead {
                inner: File::open(&path).map_err(CoreError::io(&path))?,
                stopping: options.stopping,
            };
            layer.file(&entry_relative, meta, metadata.len(), file)?;
        } else if is_whiteout {
            layer.whiteout(&entry_relative)?;
        } else if let Some((kind, device)) = special_file(&metadata) {
            layer.special(&entry_relative, kind, meta, device)?;
        } else {
            tracing::warn!("skipping socket {}", path.display());
        }
    }
    Ok(())
}

/// Unpacks a layer blob into `dest` (which must not exist yet) in overlayfs form: OCI whiteouts
/// become 0/0 character devices and opaque markers become the opaque xattr, so `dest` can be
/// used as an overlay lower directory directly. Entries that would escape `dest` are refused.
/// `stopping` is asked before every read, as [`TreeOptions::stopping`] is.
pub fn unpack(
    store: &Store,
    layer: &LayerRef,
    dest: &Path,
    stopping: Option<fn() -> bool>,
) -> Result<(), CoreError> {
    unpack_tar(open_tar(store, layer)?, dest, stopping).map_err(|error| match error {
        CoreError::Io { source, .. } if source.kind() == io::ErrorKind::InvalidData => {
            CoreError::Store {
                path: store.blob_path(&layer.digest),
                reason: source.to_string(),
            }
        }
        other => other,
    })
}

/// Unpacks an uncompressed layer tar stream into `dest`, in overlayfs form, ending with an
/// error at the next read once `stopping` says the build is stopping.
pub fn unpack_tar(
    reader: impl Read,
    dest: &Path,
    stopping: Option<fn() -> bool>,
) -> Result<(), CoreError> {
    fs::create_dir_all(dest).map_err(CoreError::io(dest))?;
    let mut archive = tar::Archive::new(StoppableRead {
        inner: reader,
        stopping,
    });
    archive.set_preserve_permissions(true);
    archive.set_preserve_ownerships(true);
    archive.set_unpack_xattrs(true);
    archive.set_overwrite(true);
    let mut directories = Vec::new();
    for entry in archive.entries().map_err(CoreError::io(dest))? {
        let mut entry = entry.map_err(CoreError::io(dest))?;
        let relative =
            safe_relative_path(&entry.path().map_err(CoreError::io(dest))?).ok_or_else(|| {
                CoreError::Store {
                    path: dest.to_path_buf(),
                    reason: "layer entry escapes the root".to_string(),
                }
            })?;
        let Some(file_name) = relative.file_name().map(OsStr::to_os_string) else {
            continue;
        };
        let target = dest.join(&relative);
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent).map_err(CoreError::io(parent))?;
        }
        let name_bytes = file_name.as_bytes();
        if name_bytes == OPAQUE_MARKER.as_bytes() {
            if let Some(parent) = target.parent() {
                set_overlay_opaque(parent)?;
            }
            continue;
        }
        if let Some(hidden) = name_bytes.strip_prefix(WHITEOUT_PREFIX.as_bytes()) {
            make_overlay_whiteout(&target.with_file_name(OsStr::from_bytes(hidden)))?;
            continue;
        }
        if entry.header().entry_type() == tar::EntryType::Directory {
            let mtime = entry.header().mtime().map_err(CoreError::io(&target))?;
            directories.push((target.clone(), mtime));
        }
        if entry.header().entry_type() == tar::EntryType::Link {
            // Hard link names are relative to the root; the tar crate's `unpack` would resolve
            // them against the working directory.
            let link_name = entry
                .link_name()
                .map_err(CoreError::io(&target))?
                .and_then(|name| safe_relative_path(&name))
                .ok_or_else(|| CoreError::Store {
                    path: target.clone(),
                    reason: "hard link without a target inside the layer".to_string(),
                })?;
            let _ = fs::remove_file(&target);
            fs::hard_link(dest.join(link_name), &target).map_err(CoreError::io(&target))?;
            continue;
        }
        entry.unpack(&target).map_err(CoreError::io(&target))?;
    }
    // Entries unpacked into a directory change its time again, so directory times are set last.
    for (directory, mtime) in directories.iter().rev() {
        let time = std::time::UNIX_EPOCH + std::time::Duration::from_secs(*mtime);
        File::open(directory)
            .and_then(|handle| handle.set_modified(time))
            .map_err(CoreError::io(directory))?;
    }
    Ok(())
}

/// `path` without a leading `/` or `.`, or None if it climbs out with `..`.
fn safe_relative_path(path: &Path) -> Option<PathBuf> {
    let mut clean = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => clean.push(part),
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir | Component::Prefix(_) => return None,
        }
    }
    Some(clean)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tempdir() -> Result<tempfile::TempDir, CoreError> {
        tempfile::tempdir().map_err(CoreError::io("tempdir"))
    }

    #[test]
    fn same_tree_gives_same_digests_and_round_trips() -> Result<(), CoreError> {
        let dir = tempdir()?;
        let store = Store::open(dir.path().join("store"))?;
        let tree = dir.path().join("tree");
        fs::create_dir_all(tree.join("etc")).map_err(CoreError::io(&tree))?;
        fs::write(tree.join("etc/hostname"), b"box\n").map_err(CoreError::io(&tree))?;
        std::os::unix::fs::symlink("hostname", tree.join("etc/name"))
            .map_err(CoreError::io(&tree))?;
        let write = || -> Result<LayerRef, CoreError> {
            let mut writer = LayerWriter::new(&store, Compression::Gzip)?;
            write_tree(&mut writer, &tree, TreeOptions::default())?;
            writer.finish()
        };
        let (first, second) = (write()?, write()?);
        assert_eq!(first, second);
        let unpacked = dir.path().join("unpacked");
        unpack(&store, &first, &unpacked, None)?;
        assert_eq!(
            fs::read(unpacked.join("etc/hostname")).map_err(CoreError::io("x"))?,
            b"box\n"
        );
        assert_eq!(
            fs::read_link(unpacked.join("etc/name")).map_err(CoreError::io("x"))?,
            PathBuf::from("hostname")
        );
        Ok(())
    }

    #[test]
    fn recompressing_keeps_the_diff_id_and_round_trips() -> Result<(), CoreError> {
        let dir = tempdir()?;
        let store = Store::open(dir.path().join("store"))?;
        let mut writer = LayerWriter::new(&store, Compression::Gzip)?;
        let meta = EntryMeta {
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime: 0,
        };
        writer.file("greeting", meta, 6, &b"hello\n"[..])?;
        let gzip = writer.finish()?;
        for compression in [Compression::Zstd, Compression::None, Compression::Gzip] {
            let other = recompress(&store, &gzip, compression)?;
            assert_eq!(other.diff_id, gzip.diff_id);
            assert_eq!(other.media_type, compression.media_type());
            assert_eq!(
                other.digest == gzip.digest,
                compression == Compression::Gzip
            );
            let unpacked = dir.path().join(format!("unpacked-{compression:?}"));
            unpack(&store, &other, &unpacked, None)?;
            let text = fs::read(unpacked.join("greeting")).map_err(CoreError::io("x"))?;
            assert_eq!(text, b"hello\n");
        }
        Ok(())
    }

    #[test]
    fn whiteouts_round_trip_between_oci_and_overlay_form() -> Result<(), CoreError> {
        let dir = tempdir()?;
        let store = Store::open(dir.path().join("store"))?;
        let mut writer = LayerWriter::new(&store, Compression::None)?;
        let meta = EntryMeta {
            mode: 0o755,
            uid: 0,
            gid: 0,
            mtime: 0,
        };
        writer.dir("etc", meta)?;
        writer.whiteout("etc/motd")?;
        writer.dir("var", meta)?;
        writer.opaque("var")?;
        let layer = writer.finish()?;
        let unpacked = dir.path().join("unpacked");
        unpack(&store, &layer, &unpacked, None)?;
        let motd = fs::symlink_metadata(unpacked.join("etc/motd")).map_err(CoreError::io("x"))?;
        assert!(motd.file_type().is_char_device() && motd.rdev() == 0);
        assert!(is_overlay_opaque(&unpacked.join("var")));

        let mut again = LayerWriter::new(&store, Compression::None)?;
        write_tree(
            &mut again,
            &unpacked,
            TreeOptions {
                overlay_whiteouts: true,
                ..Default::default()
            },
        )?;
        assert_eq!(again.finish()?.diff_id, layer.diff_id);
        Ok(())
    }

    #[test]
    fn writing_a_tree_ends_inside_a_file_when_asked_to_stop() -> Result<(), CoreError> {
        use std::sync::atomic::{AtomicUsize, Ordering};
        // Asked once per entry and once per read: the third question comes from inside the
        // content of `big`, after its first read.
        static N_ASKED: AtomicUsize = AtomicUsize::new(0);
        fn stop_at_the_third_question() -> bool {
            N_ASKED.fetch_add(1, Ordering::SeqCst) >= 2
        }
        let dir = tempdir()?;
        let store = Store::open(dir.path().join("store"))?;
        let tree = dir.path().join("tree");
        fs::create_dir_all(&tree).map_err(CoreError::io(&tree))?;
        fs::write(tree.join("big"), vec![7u8; 4 << 20]).map_err(CoreError::io(&tree))?;
        let mut writer = LayerWriter::new(&store, Compression::None)?;
        let written = write_tree(
            &mut writer,
            &tree,
            TreeOptions {
                stopping: Some(stop_at_the_third_question),
                ..Default::default()
            },
        );
        let Err(error) = written else {
            panic!("the whole tree was written");
        };
        assert!(error.to_string().contains(STOPPING), "{error}");
        assert_eq!(N_ASKED.load(Ordering::SeqCst), 3);
        Ok(())
    }

    #[test]
    fn unpacking_ends_at_the_next_read_when_asked_to_stop() -> Result<(), CoreError> {
        static STOP: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
        fn stop_once_told() -> bool {
            STOP.load(std::sync::atomic::Ordering::SeqCst)
        }
        let dir = tempdir()?;
        let mut tar_bytes = Vec::new();
        {
            let mut builder = tar::Builder::new(&mut tar_bytes);
            let mut header = tar::Header::new_gnu();
            header.set_size(3);
            header.set_mode(0o644);
            header.set_uid(0);
            header.set_gid(0);
            header.set_mtime(0);
            header.set_cksum();
            builder
                .append_data(&mut header, "file", &b"abc"[..])
                .map_err(CoreError::io("tar"))?;
            builder.finish().map_err(CoreError::io("tar"))?;
        }
        unpack_tar(
            tar_bytes.as_slice(),
            &dir.path().join("whole"),
            Some(stop_once_told),
        )?;
        assert!(dir.path().join("whole/file").is_file());
        STOP.store(true, std::sync::atomic::Ordering::SeqCst);
        let stopped = unpack_tar(
            tar_bytes.as_slice(),
            &dir.path().join("cut"),
            Some(stop_once_told),
        );
        let Err(error) = stopped else {
            panic!("the archive was unpacked although the build was stopping");
        };
        assert!(error.to_string().contains(STOPPING), "{error}");
        assert!(!dir.path().join("cut/file").exists());
        Ok(())
    }

    #[test]
    fn pax_records_count_their_own_length() {
        assert_eq!(pax_record("a", b"b"), b"6 a=b\n");
        let long = pax_record("k", &[b'v'; 5]);
        assert_eq!(long, b"11 k=vvvvv\n");
    }

    #[test]
    fn zstd_layers_keep_hard_links_and_xattrs() -> Result<(), CoreError> {
        let dir = tempdir()?;
        let store = Store::open(dir.path().join("store"))?;
        let tree = dir.path().join("tree");
        fs::create_dir_all(&tree).map_err(CoreError::io(&tree))?;
        fs::write(tree.join("a"), b"same inode").map_err(CoreError::io(&tree))?;
        fs::hard_link(tree.join("a"), tree.join("b")).map_err(CoreError::io(&tree))?;
        let xattrs_supported = set_xattr(&tree.join("a"), "user.colour", b"blue").is_ok();
        let mut writer = LayerWriter::new(&store, Compression::Zstd)?;
        write_tree(&mut writer, &tree, TreeOptions::default())?;
        let layer = writer.finish()?;
        assert_eq!(layer.media_type, LAYER_ZSTD);
        let unpacked = dir.path().join("unpacked");
        unpack(&store, &layer, &unpacked, None)?;
        let (a, b) = (
            fs::metadata(unpacked.join("a")).map_err(CoreError::io("a"))?,
            fs::metadata(unpacked.join("b")).map_err(CoreError::io("b"))?,
        );
        assert_eq!(a.ino(), b.ino());
        if xattrs_supported {
            assert_eq!(
                read_xattr(&unpacked.join("a"), "user.colour").as_deref(),
                Some(&b"blue"[..])
            );
        }
        Ok(())
    }

    #[test]
    fn xattrs_are_set_and_removed_and_overlays_own_are_left_out() -> Result<(), CoreError> {
        let dir = tempdir()?;
        let file = dir.path().join("file");
        fs::write(&file, b"").map_err(CoreError::io(&file))?;
        if set_xattr(&file, "user.colour", b"blue").is_err() {
            eprintln!("user xattrs are unsupported here: nothing to check");
            return Ok(());
        }
        assert_eq!(
            read_xattrs(&file),
            vec![("user.colour".to_string(), b"blue".to_vec())]
        );
        remove_xattr(&file, "user.colour")?;
        assert!(read_xattrs(&file).is_empty());
        assert!(remove_xattr(&file, "user.colour").is_err());
        assert!(set_xattr(&file, "user.nul\0inside", b"").is_err());
        // trusted.* needs CAP_SYS_ADMIN, as unpacking an opaque directory does.
        if set_overlay_opaque(dir.path()).is_ok() {
            assert!(is_overlay_opaque(dir.path()));
            assert!(read_xattrs(dir.path()).is_empty());
        }
        Ok(())
    }

    #[test]
    fn long_xattr_values_and_long_name_lists_are_read_whole() -> Result<(), CoreError> {
        let dir = tempdir()?;
        // One file with a value far past any small first guess; ext4 keeps all of an inode's
        // xattrs in one 4 KiB block, so 4000 bytes is about the most it takes.
        let long_value_file = dir.path().join("long-value");
        fs::write(&long_value_file, b"").map_err(CoreError::io(&long_value_file))?;
        let long_value: Vec<u8> = (0..4000u32).map(|i| b'a' + (i % 26) as u8).collect();
        if let Err(error) = set_xattr(&long_value_file, "user.long", &long_value) {
            eprintln!("the filesystem refuses a 4000-byte user xattr ({error}): nothing to check");
            return Ok(());
        }
        assert_eq!(
            read_xattrs(&long_value_file),
            vec![("user.long".to_string(), long_value)]
        );
        // Another with a name list (each name and its NUL) of over 2 KiB.
        let many_names_file = dir.path().join("many-names");
        fs::write(&many_names_file, b"").map_err(CoreError::io(&many_names_file))?;
        let mut expected = Vec::new();
        for name_idx in 0..60 {
            let name = format!("user.attribute-with-a-long-name-{name_idx:03}");
            if let Err(error) = set_xattr(&many_names_file, &name, b"v") {
                eprintln!("the filesystem refuses a {name_idx}th user xattr ({error}): stopping");
                break;
            }
            expected.push((name, b"v".to_vec()));
        }
        let names_len: usize = expected.iter().map(|(name, _)| name.len() + 1).sum();
        assert!(names_len > 1024, "only {names_len} bytes of names were set");
        let mut read = read_xattrs(&many_names_file);
        read.sort();
        assert_eq!(read, expected);
        Ok(())
    }

    #[test]
    fn zstd_blobs_do_not_depend_on_the_number_of_workers() -> Result<(), CoreError> {
        let dir = tempdir()?;
        let store = Store::open(dir.path().join("store"))?;
        // Several of libzstd's 8 MiB jobs, alternating incompressible and repetitive stretches.
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut content = Vec::new();
        while content.len() < 20 << 20 {
            for _ in 0..4096 {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                content.extend_from_slice(&state.to_le_bytes());
            }
            content.extend(b"fn main() { println!(\"layer\"); }\n".repeat(1000));
        }
        let meta = EntryMeta {
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime: 0,
        };
        let mut layers = Vec::new();
        for n_workers in [1, 2, 3, 8] {
            let sink = Sink::open(&store, Compression::Zstd, n_workers)?;
            let mut writer = LayerWriter::with_sink(sink, Compression::Zstd)?;
            writer.file("big", meta, content.len() as u64, content.as_slice())?;
            writer.file("small", meta, 6, &b"hello\n"[..])?;
            layers.push((n_workers, writer.finish()?));
        }
        let (_, first) = &layers[0];
        for (n_workers, layer) in &layers {
            assert_eq!(layer, first, "{n_workers} workers");
        }
        let unpacked = dir.path().join("unpacked");
        unpack(&store, first, &unpacked, None)?;
        assert!(fs::read(unpacked.join("big")).map_err(CoreError::io("big"))? == content);
        Ok(())
    }

    #[test]
    fn a_file_shorter_than_its_size_is_an_error_naming_it() -> Result<(), CoreError> {
        let dir = tempdir()?;
        let store = Store::open(dir.path().join("store"))?;
        let mut writer = LayerWriter::new(&store, Compression::None)?;
        let meta = EntryMeta {
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime: 0,
        };
        let error = writer
            .file("etc/shrunk", meta, 10, &b"short"[..])
            .err()
            .map(|error| error.to_string())
            .unwrap_or_default();
        assert!(error.contains("etc/shrunk ended 5 bytes short"), "{error}");
        Ok(())
    }

    #[test]
    fn a_write_error_on_the_handoff_thread_reaches_the_writer() {
        struct DiskFull;
        impl Write for DiskFull {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::Error::other("disk full"))
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let outcome = Handoff::new(DiskFull).and_then(|mut handoff| {
            // More chunks than can be in flight, so some write must find the thread gone.
            for _ in 0..2 * CHUNKS_IN_FLIGHT + 2 {
                handoff.write_all(&[7; COPY_CHUNK])?;
            }
            handoff.finish().map(|_| ())
        });
        let error = outcome.err().map(|error| error.to_string());
        assert_eq!(error.as_deref(), Some("disk full"));
    }

    #[test]
    fn entries_escaping_the_root_are_refused() {
        assert_eq!(safe_relative_path(Path::new("../etc/passwd")), None);
        assert_eq!(
            safe_relative_path(Path::new("/./etc/passwd")),
            Some(PathBuf::from("etc/passwd"))
        );
    }
}
