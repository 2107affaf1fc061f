//! Safe unpacking of a (possibly hostile) layer tar into a directory.
//!
//! Every entry is created relative to an fd of the layer directory. Parent
//! directories are opened with `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`,
//! so a symlink unpacked earlier (absolute like `evil -> /` or relative like
//! `up -> ../../..`) is resolved *as the container would see it*: inside the
//! layer. The last component is always created with a `*at` call that does
//! not follow symlinks. Policy for hostile input:
//!
//! * entry paths: a leading `/` and `./` are stripped; a `..` component fails
//!   the whole import ([`ExtractError::Traversal`] names the entry), as Docker does;
//! * paths longer than [`MAX_PATH`] bytes fail the import;
//! * symlinks are stored verbatim (their targets only matter inside the container);
//!   writes through them stay in the layer because of `RESOLVE_IN_ROOT`;
//! * hard links: the target is resolved inside the layer and must already exist,
//!   otherwise the import fails (so `x -> /etc/shadow` can never link a host file);
//! * device nodes are skipped (images get no devices); fifos are created;
//! * whiteouts (`.wh.*`): in an image's layer ([`Whiteouts::Overlay`]) they
//!   become what overlayfs reads, a 0:0 character device for a deleted path
//!   and the `trusted.overlay.opaque` xattr for `.wh..wh..opq`; in an import
//!   ([`Whiteouts::Skip`]) there is nothing below, so they are dropped;
//! * extended attributes (PAX `SCHILY.xattr.*`) are kept on files and
//!   directories, except `trusted.overlay.*`, which would steer overlayfs;
//! * a data stream shorter than the header says, or an archive without its
//!   end-of-archive block, fails the import (truncated upload).
//!
//! The caller unpacks into a fresh temporary directory and deletes it on error,
//! so a failed import leaves nothing behind.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rustix::fs::{AtFlags, FileType, Gid, Mode, OFlags, ResolveFlags, Timespec, Timestamps, Uid};
use rustix::io::Errno;
use sha2::{Digest, Sha256};
use thiserror::Error;

/// Longest accepted entry path (or hard-link target), in bytes.
pub const MAX_PATH: usize = 4096;

/// Why unpacking a layer failed.
#[derive(Debug, Error)]
pub enum ExtractError {
    #[error("reading the archive: {source}")]
    Read { source: io::Error },
    #[error("archive is empty or truncated (no end-of-archive block)")]
    NoEnd,
    #[error("entry {entry:?}: path escapes the layer ('..' component)")]
    Traversal { entry: String },
    #[error("entry {entry:?}: path longer than {MAX_PATH} bytes")]
    PathTooLong { entry: String },
    #[error("entry {entry:?}: hard link target {target:?}: {reason}")]
    BadLink {
        entry: String,
        target: String,
        reason: String,
    },
    #[error("entry {entry:?}: {field} {value} does not fit 32 bits")]
    BadId {
        entry: String,
        field: &'static str,
        value: u64,
    },
    #[error("entry {entry:?}: data truncated (header says {expected} bytes, got {got})")]
    Truncated {
        entry: String,
        expected: u64,
        got: u64,
    },
    #[error("entry {entry:?}: {op}: {source}")]
    Io {
        entry: String,
        op: &'static str,
        source: io::Error,
    },
}

/// What to do with whiteout entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Whiteouts {
    /// Drop them (a single layer with nothing below it).
    Skip,
    /// Turn them into overlayfs whiteouts (a layer in a stack).
    Overlay,
}

/// Result of unpacking one layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unpacked {
    /// sha256 (hex) of the uncompressed tar stream: the layer's diff_id.
    pub diff_id_hex: String,
    /// Bytes of regular-file data written.
    pub size: u64,
}

/// Hashes and counts every byte the tar parser consumes, and remembers how
/// many zero bytes ended the stream so far (to see the end-of-archive block).
struct Hashing<R> {
    inner: R,
    hasher: ParallelHasher,
    trailing_zeros: u64,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let chunk = &buf[..n];
        self.hasher.update(chunk)?;
        match chunk.iter().rposition(|b| *b != 0) {
            Some(i) => self.trailing_zeros = (n - i - 1) as u64,
            None => self.trailing_zeros += n as u64,
        }
        Ok(n)
    }
}

/// SHA-256 on a second thread, so hashing the diffID overlaps with writing
/// the files (it is most of the CPU an unpack costs). Bytes are batched
/// into 1 MiB blocks before they cross the channel.
struct ParallelHasher {
    buf: Vec<u8>,
    tx: Option<std::sync::mpsc::SyncSender<Vec<u8>>>,
    worker: Option<std::thread::JoinHandle<[u8; 32]>>,
}

const HASH_BLOCK: usize = 1 << 20;

impl ParallelHasher {
    fn start() -> ParallelHasher {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(8);
        let worker = std::thread::Builder::new()
            .name("layer-sha256".into())
            .spawn(move || {
                let mut h = Sha256::new();
                for block in rx {
                    h.update(&block);
                }
                h.finalize().into()
            })
            .ok();
        ParallelHasher {
            buf: Vec::with_capacity(HASH_BLOCK),
            tx: worker.as_ref().map(|_| tx),
            worker,
        }
    }

    fn update(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.buf.extend_from_slice(bytes);
        if self.buf.len() >= HASH_BLOCK {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        let block = std::mem::replace(&mut self.buf, Vec::with_capacity(HASH_BLOCK));
        match &self.tx {
            Some(tx) => tx
                .send(block)
                .map_err(|_| io::Error::other("the hashing thread stopped")),
            None => Err(io::Error::other("could not start the hashing thread")),
        }
    }

    fn finish(mut self) -> io::Result<[u8; 32]> {
        if !self.buf.is_empty() {
            self.flush()?;
        }
        self.tx = None;
        self.worker
            .take()
            .ok_or_else(|| io::Error::other("could not start the hashing thread"))?
            .join()
            .map_err(|_| io::Error::other("the hashing thread panicked"))
    }
}

/// Compression of a layer stream, by its magic bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    pub fn detect(head: &[u8]) -> Compression {
        if head.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }
}

/// Wraps `input` in a gzip or zstd decoder when it starts with that magic.
pub fn decompressed<'a>(input: impl Read + 'a) -> io::Result<Box<dyn Read + 'a>> {
    let mut br = BufReader::with_capacity(256 * 1024, input);
    let head = br.fill_buf()?;
    match Compression::detect(head) {
        Compression::Gzip => Ok(Box::new(flate2::bufread::MultiGzDecoder::new(br))),
        Compression::Zstd => Ok(Box::new(
            ruzstd::decoding::StreamingDecoder::new(br)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?,
        )),
        Compression::None => Ok(Box::new(br)),
    }
}

/// Unpacks the tar stream `input` (plain, gzip or zstd) into the existing,
/// empty directory `dest`.
pub fn unpack(
    input: impl Read,
    dest: &Path,
    whiteouts: Whiteouts,
) -> Result<Unpacked, ExtractError> {
    let read = |source| ExtractError::Read { source };
    let root: OwnedFd = File::open(dest).map_err(read)?.into();
    let reader = Hashing {
        inner: decompressed(input).map_err(read)?,
        hasher: ParallelHasher::start(),
        trailing_zeros: 0,
    };
    let mut archive = tar::Archive::new(reader);
    let mut size = 0u64;
    let mut dir_times: Vec<(Vec<Vec<u8>>, u64)> = Vec::new();
    for entry in archive.entries().map_err(read)? {
        let mut entry = entry.map_err(read)?;
        if let Some(n) = unpack_entry(&root, &mut entry, &mut dir_times, whiteouts)? {
            size += n;
        }
    }
    let mut reader = archive.into_inner();
    if reader.trailing_zeros < 512 {
        return Err(ExtractError::NoEnd);
    }
    // The rest of the stream (the second zero block and record padding) is
    // part of the diff_id too.
    io::copy(&mut reader, &mut io::sink()).map_err(read)?;
    // Directory mtimes last: creating children changed them. Best effort.
    for (comps, mtime) in dir_times.iter().rev() {
        if let Some((name, parent)) = comps.split_last() {
            if let Ok(pfd) = open_dir(&root, parent) {
                let _ = rustix::fs::utimensat(
                    &pfd,
                    OsStr::from_bytes(name),
                    &times(*mtime),
                    AtFlags::SYMLINK_NOFOLLOW,
                );
            }
        }
    }
    Ok(Unpacked {
        diff_id_hex: crate::fsutil::hex(&reader.hasher.finish().map_err(read)?),
        size,
    })
}

/// Copies an entry's data with a large buffer (fewer write calls than
/// `io::copy`'s 8 KiB).
fn copy_data(from: &mut impl Read, to: &mut File) -> io::Result<u64> {
    use std::io::Write;
    thread_local! {
        static BUF: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0u8; 256 * 1024]);
    }
    BUF.with(|b| {
        let mut buf = b.borrow_mut();
        let mut total = 0u64;
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) => return Ok(total),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            to.write_all(&buf[..n])?;
            total += n as u64;
        }
    })
}

/// Splits a tar path into components: drops empty and `.` parts, refuses `..`.
fn components(raw: &[u8]) -> Option<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    for c in raw.split(|b| *b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => return None,
            c => out.push(c.to_vec()),
        }
    }
    Some(out)
}

fn times(mtime: u64) -> Timestamps {
    let t = Timespec {
        tv_sec: mtime.min(i64::MAX as u64) as i64,
        tv_nsec: 0,
    };
    Timestamps {
        last_access: t,
        last_modification: t,
    }
}

fn join(comps: &[Vec<u8>]) -> Vec<u8> {
    if comps.is_empty() {
        return b".".to_vec();
    }
    comps.join(&b'/')
}

/// Opens an existing directory of the layer, resolving symlinks inside it.
fn open_dir(root: &OwnedFd, comps: &[Vec<u8>]) -> io::Result<OwnedFd> {
    let p = join(comps);
    loop {
        match rustix::fs::openat2(
            root,
            OsStr::from_bytes(&p),
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
        ) {
            Err(Errno::AGAIN) => continue,
            r => return r.map_err(io::Error::from),
        }
    }
}

/// Opens an existing directory of the layer for reading (an fd that takes
/// xattrs), resolving symlinks inside it.
fn open_dir_rw(root: &OwnedFd, comps: &[Vec<u8>]) -> io::Result<OwnedFd> {
    let p = join(comps);
    loop {
        match rustix::fs::openat2(
            root,
            OsStr::from_bytes(&p),
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
        ) {
            Err(Errno::AGAIN) => continue,
            r => return r.map_err(io::Error::from),
        }
    }
}

/// The entry's PAX extended attributes, minus the ones that steer overlayfs.
fn xattrs_of<R: Read>(entry: &mut tar::Entry<'_, R>) -> io::Result<Vec<(String, Vec<u8>)>> {
    let mut out = Vec::new();
    if let Some(exts) = entry.pax_extensions()? {
        for ext in exts {
            let ext = ext?;
            let Ok(key) = ext.key() else { continue };
            if let Some(name) = key.strip_prefix("SCHILY.xattr.") {
                if !name.starts_with("trusted.overlay.") {
                    out.push((name.to_string(), ext.value_bytes().to_vec()));
                }
            }
        }
    }
    Ok(out)
}

/// Sets extended attributes; a filesystem without support for one is not
/// an error (as with Docker).
fn set_xattrs(fd: impl AsFd, xattrs: &[(String, Vec<u8>)]) -> io::Result<()> {
    for (k, v) in xattrs {
        match rustix::fs::fsetxattr(&fd, k.as_str(), v, rustix::fs::XattrFlags::empty()) {
            Ok(()) | Err(Errno::NOTSUP) => {}
            Err(e) => return Err(io::Error::other(format!("{k}: {e}"))),
        }
    }
    Ok(())
}

/// Opens a directory of the layer, creating missing ones (mode 0755) on the way.
fn ensure_dir(root: &OwnedFd, comps: &[Vec<u8>]) -> io::Result<OwnedFd> {
    match (open_dir(root, comps), comps.split_last()) {
        (Err(e), Some((last, parent))) if e.raw_os_error() == Some(libc::ENOENT) => {
            let pfd = ensure_dir(root, parent)?;
            match rustix::fs::mkdirat(&pfd, OsStr::from_bytes(last), Mode::from_raw_mode(0o755)) {
                Ok(()) | Err(Errno::EXIST) => {}
                Err(e) => return Err(e.into()),
            }
            open_dir(root, comps)
        }
        (r, _) => r,
    }
}

/// Removes whatever non-directory sits at `name` so a new entry can take its place.
fn clear(parent: &OwnedFd, name: &OsStr) -> io::Result<()> {
    let st = rustix::fs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW)?;
    if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "a directory already exists at this path",
        ));
    }
    rustix::fs::unlinkat(parent, name, AtFlags::empty())?;
    Ok(())
}

/// Runs `create`; if the name is taken by a non-directory, removes it and retries once.
fn create_replacing(
    parent: &OwnedFd,
    name: &OsStr,
    mut create: impl FnMut() -> rustix::io::Result<()>,
) -> io::Result<()> {
    match create() {
        Err(Errno::EXIST) => {
            clear(parent, name)?;
            create().map_err(io::Error::from)
        }
        r => r.map_err(io::Error::from),
    }
}

fn set_owner_mode(
    parent: &OwnedFd,
    name: &OsStr,
    uid: u32,
    gid: u32,
    mode: Option<u32>,
) -> io::Result<()> {
    let (u, g) = (Uid::from_raw(uid), Gid::from_raw(gid));
    rustix::fs::chownat(parent, name, Some(u), Some(g), AtFlags::SYMLINK_NOFOLLOW)?;
    if let Some(m) = mode {
        // chown cleared set-id bits; the mode goes on after it.
        rustix::fs::chmodat(parent, name, Mode::from_raw_mode(m), AtFlags::empty())?;
    }
    Ok(())
}

/// Unpacks one entry; returns the regular-file bytes written, if any.
fn unpack_entry<R: Read>(
    root: &OwnedFd,
    entry: &mut tar::Entry<'_, R>,
    dir_times: &mut Vec<(Vec<Vec<u8>>, u64)>,
    whiteouts: Whiteouts,
) -> Result<Option<u64>, ExtractError> {
    let raw = entry.path_bytes().into_owned();
    let name_str = String::from_utf8_lossy(&raw).into_owned();
    let io_err = |op: &'static str| {
        let entry = name_str.clone();
        move |source: io::Error| ExtractError::Io { entry, op, source }
    };
    if raw.len() > MAX_PATH {
        return Err(ExtractError::PathTooLong { entry: name_str });
    }
    let comps = components(&raw).ok_or_else(|| ExtractError::Traversal {
        entry: name_str.clone(),
    })?;
    let kind = entry.header().entry_type();
    let header = entry.header();
    let mode = header.mode().map_err(io_err("reading mode"))? & 0o7777;
    // Empty numeric fields read as 0, as Go's archive/tar (Docker) does.
    let uid = header.uid().unwrap_or(0);
    let gid = header.gid().unwrap_or(0);
    let mtime = header.mtime().unwrap_or(0);
    let uid = u32::try_from(uid).map_err(|_| ExtractError::BadId {
        entry: name_str.clone(),
        field: "uid",
        value: uid,
    })?;
    let gid = u32::try_from(gid).map_err(|_| ExtractError::BadId {
        entry: name_str.clone(),
        field: "gid",
        value: gid,
    })?;

    let Some((last, parent_comps)) = comps.split_last() else {
        // The layer root itself ("./"): only its owner and mode apply.
        if kind.is_dir() {
            let (u, g) = (Uid::from_raw(uid), Gid::from_raw(gid));
            rustix::fs::fchown(root, Some(u), Some(g)).map_err(|e| io_err("chown")(e.into()))?;
            rustix::fs::fchmod(root, Mode::from_raw_mode(mode))
                .map_err(|e| io_err("chmod")(e.into()))?;
        }
        return Ok(None);
    };
    if let Some(hidden) = last.strip_prefix(b".wh.") {
        if whiteouts == Whiteouts::Skip {
            return Ok(None);
        }
        let parent = ensure_dir(root, parent_comps).map_err(io_err("creating parent"))?;
        if hidden == b".wh..opq" {
            let dir = open_dir_rw(root, parent_comps).map_err(io_err("opening opaque dir"))?;
            rustix::fs::fsetxattr(
                &dir,
                "trusted.overlay.opaque",
                b"y",
                rustix::fs::XattrFlags::empty(),
            )
            .map_err(|e| io_err("marking opaque")(e.into()))?;
            return Ok(None);
        }
        let name = OsStr::from_bytes(hidden);
        create_replacing(&parent, name, || {
            rustix::fs::mknodat(
                &parent,
                name,
                FileType::CharacterDevice,
                Mode::empty(),
                rustix::fs::makedev(0, 0),
            )
        })
        .map_err(io_err("creating whiteout"))?;
        return Ok(None);
    }
    let name = OsStr::from_bytes(last);
    let xattrs = xattrs_of(entry).map_err(io_err("reading xattrs"))?;

    if kind.is_file() || kind == tar::EntryType::Continuous || kind == tar::EntryType::GNUSparse {
        let parent = ensure_dir(root, parent_comps).map_err(io_err("creating parent"))?;
        let flags =
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let mut fd = None;
        create_replacing(&parent, name, || {
            fd = Some(rustix::fs::openat(
                &parent,
                name,
                flags,
                Mode::from_raw_mode(0o600),
            )?);
            Ok(())
        })
        .map_err(io_err("creating file"))?;
        let Some(fd) = fd else {
            return Err(io_err("creating file")(io::Error::other("no descriptor")));
        };
        let mut file = File::from(fd);
        let expected = entry.size();
        let got = copy_data(entry, &mut file).map_err(io_err("writing data"))?;
        if got != expected {
            return Err(ExtractError::Truncated {
                entry: name_str,
                expected,
                got,
            });
        }
        let (u, g) = (Uid::from_raw(uid), Gid::from_raw(gid));
        rustix::fs::fchown(file.as_fd(), Some(u), Some(g))
            .map_err(|e| io_err("chown")(e.into()))?;
        rustix::fs::fchmod(file.as_fd(), Mode::from_raw_mode(mode))
            .map_err(|e| io_err("chmod")(e.into()))?;
        set_xattrs(&file, &xattrs).map_err(io_err("setting xattrs"))?;
        rustix::fs::futimens(file.as_fd(), &times(mtime))
            .map_err(|e| io_err("set mtime")(e.into()))?;
        return Ok(Some(got));
    }

    if kind.is_dir() {
        let parent = ensure_dir(root, parent_comps).map_err(io_err("creating parent"))?;
        match rustix::fs::mkdirat(&parent, name, Mode::from_raw_mode(0o700)) {
            Ok(()) => {}
            Err(Errno::EXIST) => {
                let st = rustix::fs::statat(&parent, name, AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(|e| io_err("inspecting existing path")(e.into()))?;
                if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
                    clear(&parent, name).map_err(io_err("replacing with a directory"))?;
                    rustix::fs::mkdirat(&parent, name, Mode::from_raw_mode(0o700))
                        .map_err(|e| io_err("creating directory")(e.into()))?;
                }
            }
            Err(e) => return Err(io_err("creating directory")(e.into())),
        }
        set_owner_mode(&parent, name, uid, gid, Some(mode))
            .map_err(io_err("setting owner/mode"))?;
        if !xattrs.is_empty() {
            let dir = open_dir_rw(root, &comps).map_err(io_err("opening directory"))?;
            set_xattrs(&dir, &xattrs).map_err(io_err("setting xattrs"))?;
        }
        dir_times.push((comps.clone(), mtime));
        return Ok(None);
    }

    if kind.is_symlink() {
        let target = entry
            .link_name_bytes()
            .ok_or_else(|| io_err("symlink")(io::Error::other("no link target")))?
            .into_owned();
        let parent = ensure_dir(root, parent_comps).map_err(io_err("creating parent"))?;
        create_replacing(&parent, name, || {
            rustix::fs::symlinkat(OsStr::from_bytes(&target), &parent, name)
        })
        .map_err(io_err("creating symlink"))?;
        set_owner_mode(&parent, name, uid, gid, None).map_err(io_err("setting owner"))?;
        rustix::fs::utimensat(&parent, name, &times(mtime), AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| io_err("set mtime")(e.into()))?;
        return Ok(None);
    }

    if kind.is_hard_link() {
        let target_raw = entry
            .link_name_bytes()
            .ok_or_else(|| io_err("hard link")(io::Error::other("no link target")))?
            .into_owned();
        let target = String::from_utf8_lossy(&target_raw).into_owned();
        let bad = |reason: &str| ExtractError::BadLink {
            entry: name_str.clone(),
            target: target.clone(),
            reason: reason.to_string(),
        };
        if target_raw.len() > MAX_PATH {
            return Err(bad("longer than the path limit"));
        }
        let tcomps =
            components(&target_raw).ok_or_else(|| bad("escapes the layer ('..' component)"))?;
        let Some((tlast, tparent)) = tcomps.split_last() else {
            return Err(bad("names the layer root"));
        };
        let tparent_fd =
            open_dir(root, tparent).map_err(|e| bad(&format!("not in the layer: {e}")))?;
        let parent = ensure_dir(root, parent_comps).map_err(io_err("creating parent"))?;
        let tname = OsStr::from_bytes(tlast);
        match create_replacing(&parent, name, || {
            rustix::fs::linkat(&tparent_fd, tname, &parent, name, AtFlags::empty())
        }) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                return Err(bad("does not exist in the layer"))
            }
            Err(e) => return Err(io_err("creating hard link")(e)),
        }
        return Ok(None);
    }

    if kind == tar::EntryType::Fifo {
        let parent = ensure_dir(root, parent_comps).map_err(io_err("creating parent"))?;
        create_replacing(&parent, name, || {
            rustix::fs::mknodat(&parent, name, FileType::Fifo, Mode::from_raw_mode(0o600), 0)
        })
        .map_err(io_err("creating fifo"))?;
        set_owner_mode(&parent, name, uid, gid, Some(mode))
            .map_err(io_err("setting owner/mode"))?;
        rustix::fs::utimensat(&parent, name, &times(mtime), AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| io_err("set mtime")(e.into()))?;
        return Ok(None);
    }

    // Device nodes, sockets-in-tar, global pax headers and unknown types: skipped.
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components_normalize_and_refuse_dotdot() {
        assert_eq!(
            components(b"/./a//b/./c/").unwrap(),
            vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]
        );
        assert_eq!(components(b"./").unwrap(), Vec::<Vec<u8>>::new());
        assert!(components(b"a/../b").is_none());
        assert!(components(b"../../escape").is_none());
    }
}
