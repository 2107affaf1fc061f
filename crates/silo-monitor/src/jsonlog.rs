//! Docker's json-file log driver: container output split into lines, one
//! JSON object per line, rotation by size, and a full disk that never stops
//! the container (dropped bytes are counted in `log-errors.json`). The same
//! writer speaks the Kubernetes CRI log format for containers of the CRI.

use crate::files;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

/// A partial line is written as-is once it reaches this many bytes.
pub const MAX_PARTIAL: usize = 16 * 1024;

/// Once the disk has filled up, the log leaves this much room free for the
/// monitor's own state files (exit.json above all).
pub const HEADROOM: u64 = 64 * 1024;

/// Which output stream a chunk came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    pub fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }

    /// The stream of Docker's multiplexed attach frames.
    pub fn frame_stream(self) -> silo_sys::frame::Stream {
        match self {
            Stream::Stdout => silo_sys::frame::Stream::Stdout,
            Stream::Stderr => silo_sys::frame::Stream::Stderr,
        }
    }
}

/// Splits a byte stream into log records: each complete line (with its
/// `\n`), or a partial line once it fills [`MAX_PARTIAL`] or at the end.
#[derive(Default)]
pub struct Splitter {
    partial: Vec<u8>,
}

impl Splitter {
    /// Feeds `data`, calling `emit` for every finished record.
    pub fn feed(&mut self, mut data: &[u8], mut emit: impl FnMut(&[u8])) {
        while !data.is_empty() {
            match data.iter().position(|b| *b == b'\n') {
                Some(i) if self.partial.is_empty() && i < MAX_PARTIAL => {
                    emit(&data[..=i]);
                    data = &data[i + 1..];
                }
                found => {
                    let room = MAX_PARTIAL - self.partial.len();
                    let take = found.map_or(data.len(), |i| i + 1).min(room);
                    self.partial.extend_from_slice(&data[..take]);
                    data = &data[take..];
                    if self.partial.last() == Some(&b'\n') || self.partial.len() >= MAX_PARTIAL {
                        emit(&self.partial);
                        self.clear();
                    }
                }
            }
        }
    }

    /// Emits whatever partial line is left (the stream ended).
    pub fn flush(&mut self, mut emit: impl FnMut(&[u8])) {
        if !self.partial.is_empty() {
            emit(&self.partial);
            self.clear();
        }
    }

    fn clear(&mut self) {
        self.partial.clear();
        // Give a big buffer back: an idle monitor should stay small.
        if self.partial.capacity() > 1024 {
            self.partial = Vec::new();
        }
    }
}

/// Appends `s` to `out` as the body of a JSON string (no quotes). Invalid
/// UTF-8 becomes U+FFFD, as Go's encoding/json does.
pub fn escape_into(out: &mut Vec<u8>, s: &[u8]) {
    for chunk in s.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '"' => out.extend_from_slice(b"\\\""),
                '\\' => out.extend_from_slice(b"\\\\"),
                '\n' => out.extend_from_slice(b"\\n"),
                '\r' => out.extend_from_slice(b"\\r"),
                '\t' => out.extend_from_slice(b"\\t"),
                c if (c as u32) < 0x20 => {
                    const HEX: &[u8; 16] = b"0123456789abcdef";
                    let v = c as usize;
                    out.extend_from_slice(b"\\u00");
                    out.push(HEX[v >> 4]);
                    out.push(HEX[v & 15]);
                }
                c => {
                    let mut b = [0u8; 4];
                    out.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
                }
            }
        }
        if !chunk.invalid().is_empty() {
            out.extend_from_slice("\u{fffd}".as_bytes());
        }
    }
}

/// Appends one json-file line (with its trailing newline) to `out`.
pub fn encode_line(out: &mut Vec<u8>, log: &[u8], stream: Stream, time: &str) {
    out.extend_from_slice(b"{\"log\":\"");
    escape_into(out, log);
    out.extend_from_slice(b"\",\"stream\":\"");
    out.extend_from_slice(stream.name().as_bytes());
    out.extend_from_slice(b"\",\"time\":\"");
    out.extend_from_slice(time.as_bytes());
    out.extend_from_slice(b"\"}\n");
}

/// Appends one CRI log line: `<time> <stream> <F|P> <text>\n`, where F
/// marks a record that ended a line (its `\n` is the line's end) and P one
/// cut short (a long line, or the last bytes of the stream).
pub fn encode_cri_line(out: &mut Vec<u8>, log: &[u8], stream: Stream, time: &str) {
    out.extend_from_slice(time.as_bytes());
    out.push(b' ');
    out.extend_from_slice(stream.name().as_bytes());
    match log.strip_suffix(b"\n") {
        Some(text) => {
            out.extend_from_slice(b" F ");
            out.extend_from_slice(text);
        }
        None => {
            out.extend_from_slice(b" P ");
            out.extend_from_slice(log);
        }
    }
    out.push(b'\n');
}

/// The json-file (or CRI) writer for one container.
pub struct LogWriter {
    /// Lines in the CRI format (at `path`, chosen by the kubelet).
    cri: bool,
    path: PathBuf,
    dir: PathBuf,
    /// The files the log may span, the current one included (>= 1).
    max_files: u32,
    /// Docker's `none` driver: nothing is written.
    disabled: bool,
    errors_path: PathBuf,
    file: Option<File>,
    size: u64,
    max_bytes: Option<u64>,
    line: Vec<u8>,
    dropped: u64,
    last_error: String,
    /// Set once the disk filled up: keep [`HEADROOM`] free from then on.
    degraded: bool,
    reserve: Option<files::Reserve>,
}

impl LogWriter {
    /// A writer for `<dir>/container-json.log`. The file is opened lazily,
    /// so a missing directory shows up as dropped bytes, not as a failure.
    /// `reserve` is released the first time the disk fills up.
    pub fn new(dir: &Path, max_bytes: Option<u64>, reserve: Option<files::Reserve>) -> LogWriter {
        let path = dir.join(crate::protocol::LOG_FILE);
        let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        LogWriter {
            cri: false,
            dir: dir.to_path_buf(),
            max_files: 2,
            disabled: false,
            errors_path: dir.join(crate::protocol::LOG_ERRORS_FILE),
            path,
            file: None,
            size,
            max_bytes,
            line: Vec::new(),
            dropped: 0,
            last_error: String::new(),
            degraded: false,
            reserve,
        }
    }

    /// With at most `n` files (the current one included; at least 1).
    pub fn max_files(mut self, n: u32) -> LogWriter {
        self.max_files = n.max(1);
        self
    }

    /// Writes CRI log lines to `path` instead of json-file lines.
    pub fn cri(mut self, path: Option<PathBuf>) -> LogWriter {
        if let Some(path) = path {
            self.size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            self.path = path;
            self.cri = true;
            // The kubelet reads the file as soon as the container runs,
            // output or not; a failure here shows up as dropped bytes.
            let _ = self.open();
        }
        self
    }

    /// Closes the log file and opens it again by name (the kubelet moved
    /// it away to rotate it): the file is made at once, so a failure is
    /// the caller's to see.
    pub fn reopen(&mut self) -> Result<(), String> {
        self.file = None;
        self.size = 0;
        if self.disabled {
            return Ok(());
        }
        self.open()
            .map_err(|e| format!("reopening {}: {e}", self.path.display()))
    }

    /// Writes nothing at all (Docker's `none` log driver).
    pub fn disabled(mut self, off: bool) -> LogWriter {
        self.disabled = off;
        self
    }

    /// The space reserve, for the monitor's own state files.
    pub fn reserve(&mut self) -> &mut Option<files::Reserve> {
        &mut self.reserve
    }

    /// Bytes of container output that could not be written.
    pub fn dropped_bytes(&self) -> u64 {
        self.dropped
    }

    /// Writes one record.
    pub fn write(&mut self, stream: Stream, chunk: &[u8], time: &str) {
        if self.disabled {
            return;
        }
        self.line.clear();
        if self.cri {
            encode_cri_line(&mut self.line, chunk, stream, time);
        } else {
            encode_line(&mut self.line, chunk, stream, time);
        }
        let len = self.line.len() as u64;
        if self.degraded && !self.has_headroom(len) {
            self.drop_record(chunk.len(), "no space left on the log's filesystem");
            return;
        }
        if let Some(max) = self.max_bytes {
            if self.size > 0 && self.size + len > max {
                if let Err(e) = self.rotate() {
                    self.last_error = e;
                }
            }
        }
        let result = match self.open() {
            Ok(()) => match &mut self.file {
                Some(f) => f.write_all(&self.line),
                None => Ok(()),
            },
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => {
                self.size += len;
                self.shrink();
            }
            Err(e) => {
                // Cut off a torn line so the file stays one object per line.
                if let Some(f) = &self.file {
                    let _ = f.set_len(self.size);
                }
                let no_space = e.raw_os_error() == Some(libc::ENOSPC);
                let msg = format!("writing {}: {e}", self.path.display());
                if no_space {
                    self.degraded = true;
                    if let Some(r) = self.reserve.take() {
                        r.release();
                    }
                }
                self.drop_record(chunk.len(), &msg);
            }
        }
    }

    fn shrink(&mut self) {
        if self.line.capacity() > 4096 {
            self.line = Vec::new();
        }
    }

    fn drop_record(&mut self, n: usize, why: &str) {
        self.dropped += n as u64;
        if self.last_error != why {
            self.last_error = why.to_string();
        }
        self.shrink();
        let doc = crate::protocol::LogErrors {
            dropped_bytes: self.dropped,
            last_error: self.last_error.clone(),
        };
        // Best effort: the disk may be the very thing that is full.
        let _ = files::write_json(&self.errors_path, &doc, Some(&mut self.reserve));
    }

    fn has_headroom(&self, len: u64) -> bool {
        let Some(dir) = self.path.parent() else {
            return true;
        };
        match rustix::fs::statvfs(dir) {
            Ok(st) => st.f_bavail.saturating_mul(st.f_frsize) >= HEADROOM + len,
            Err(_) => true,
        }
    }

    fn open(&mut self) -> std::io::Result<()> {
        if self.file.is_none() {
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)?;
            self.size = f.metadata().map(|m| m.len()).unwrap_or(self.size);
            self.file = Some(f);
        }
        Ok(())
    }

    /// Shifts the rotated files up by one (the oldest beyond `max_files`
    /// goes) and the current file to `.1`; with one file, the current file
    /// is dropped and starts again empty.
    fn rotate(&mut self) -> Result<(), String> {
        use crate::protocol::rotated_log;
        self.file = None;
        let moved = |from: &Path, to: &Path| match std::fs::rename(from, to) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(format!(
                "rotating {} to {}: {e}",
                from.display(),
                to.display()
            )),
            _ => Ok(()),
        };
        if self.max_files == 1 {
            match std::fs::remove_file(&self.path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(format!("truncating {}: {e}", self.path.display()))
                }
                _ => {}
            }
        } else {
            for k in (1..self.max_files - 1).rev() {
                moved(&rotated_log(&self.dir, k), &rotated_log(&self.dir, k + 1))?;
            }
            moved(&self.path, &rotated_log(&self.dir, 1))?;
        }
        self.size = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(chunks: &[&[u8]]) -> Vec<Vec<u8>> {
        let mut s = Splitter::default();
        let mut out = Vec::new();
        for c in chunks {
            s.feed(c, |r| out.push(r.to_vec()));
        }
        s.flush(|r| out.push(r.to_vec()));
        out
    }

    #[test]
    fn cri_lines_mark_full_and_partial_records() {
        let mut out = Vec::new();
        encode_cri_line(
            &mut out,
            b"hello\n",
            Stream::Stdout,
            "2026-01-01T00:00:00.5Z",
        );
        encode_cri_line(&mut out, b"tail", Stream::Stderr, "2026-01-01T00:00:01Z");
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "2026-01-01T00:00:00.5Z stdout F hello\n2026-01-01T00:00:01Z stderr P tail\n"
        );
    }

    #[test]
    fn cri_writer_writes_its_path_and_reopens_after_a_move() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("c/0.log");
        std::fs::create_dir(d.path().join("c")).unwrap();
        let mut w = LogWriter::new(d.path(), None, None).cri(Some(path.clone()));
        w.write(Stream::Stdout, b"one\n", "T1");
        std::fs::rename(&path, d.path().join("c/0.log.old")).unwrap();
        w.write(Stream::Stdout, b"two\n", "T2");
        w.reopen().unwrap();
        w.write(Stream::Stdout, b"three\n", "T3");
        let old = std::fs::read_to_string(d.path().join("c/0.log.old")).unwrap();
        assert_eq!(old, "T1 stdout F one\nT2 stdout F two\n");
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "T3 stdout F three\n"
        );
        assert!(!d.path().join(crate::protocol::LOG_FILE).exists());
        std::fs::remove_dir_all(d.path().join("c")).unwrap();
        let err = w.reopen().unwrap_err();
        assert!(err.contains("c/0.log"), "{err}");
    }

    #[test]
    fn splits_on_newlines_across_chunks() {
        let out = split(&[b"a\nb", b"c\n\nd"]);
        assert_eq!(
            out,
            vec![
                b"a\n".to_vec(),
                b"bc\n".to_vec(),
                b"\n".to_vec(),
                b"d".to_vec()
            ]
        );
    }

    #[test]
    fn long_partial_line_is_cut_at_the_limit() {
        let big = vec![b'x'; MAX_PARTIAL + 10];
        let out = split(&[&big, b"y\n"]);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].len(), MAX_PARTIAL);
        assert_eq!(out[1], [&[b'x'; 10][..], b"y\n"].concat());
        // A single chunk holding a long line is cut the same way.
        let mut one = vec![b'z'; MAX_PARTIAL + 3];
        one.push(b'\n');
        let out = split(&[&one]);
        assert_eq!(
            out.iter().map(Vec::len).collect::<Vec<_>>(),
            vec![MAX_PARTIAL, 4]
        );
    }

    #[test]
    fn lines_are_valid_json_with_docker_fields() {
        let mut out = Vec::new();
        let raw = b"q\"b\\s\t\x01\xff\xfeok\n";
        encode_line(
            &mut out,
            raw,
            Stream::Stderr,
            "2026-11-29T12:00:00.000000001Z",
        );
        assert_eq!(out.last(), Some(&b'\n'));
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["log"], "q\"b\\s\t\u{1}\u{fffd}\u{fffd}ok\n");
        assert_eq!(v["stream"], "stderr");
        assert_eq!(v["time"], "2026-11-29T12:00:00.000000001Z");
    }

    #[test]
    fn rotates_keeping_one_old_file() {
        let d = tempfile::tempdir().unwrap();
        let mut w = LogWriter::new(d.path(), Some(200), None);
        for i in 0..10 {
            w.write(Stream::Stdout, format!("line {i}\n").as_bytes(), "T");
        }
        let cur = std::fs::read_to_string(d.path().join("container-json.log")).unwrap();
        let old = std::fs::read_to_string(d.path().join("container-json.log.1")).unwrap();
        assert!(cur.len() <= 200 && old.len() <= 200, "{cur:?} {old:?}");
        assert!(cur.contains("line 9\\n"), "{cur}");
        assert!(!d.path().join("container-json.log.2").exists());
        for l in cur.lines().chain(old.lines()) {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            assert_eq!(v["stream"], "stdout");
        }
        assert_eq!(w.dropped_bytes(), 0);
    }

    #[test]
    fn keeps_at_most_max_files() {
        let d = tempfile::tempdir().unwrap();
        let mut w = LogWriter::new(d.path(), Some(100), None).max_files(3);
        for i in 0..40 {
            w.write(Stream::Stdout, format!("line {i}\n").as_bytes(), "T");
        }
        let read = |n: &str| std::fs::read_to_string(d.path().join(n)).unwrap();
        assert!(read("container-json.log").contains("line 39\\n"));
        let (one, two) = (read("container-json.log.1"), read("container-json.log.2"));
        assert!(!one.is_empty() && !two.is_empty());
        assert!(!d.path().join("container-json.log.3").exists());
        // Newest first: .1 holds later lines than .2.
        let first = |s: &str| -> u32 {
            let v: serde_json::Value = serde_json::from_str(s.lines().next().unwrap()).unwrap();
            v["log"].as_str().unwrap().trim()[5..].parse().unwrap()
        };
        assert!(first(&one) > first(&two));
        // One file: a full log starts again.
        let d = tempfile::tempdir().unwrap();
        let mut w = LogWriter::new(d.path(), Some(100), None).max_files(1);
        for i in 0..40 {
            w.write(Stream::Stdout, format!("line {i}\n").as_bytes(), "T");
        }
        assert!(!d.path().join("container-json.log.1").exists());
        assert!(
            std::fs::metadata(d.path().join("container-json.log"))
                .unwrap()
                .len()
                <= 100
        );
        // Disabled: nothing written, nothing dropped.
        let d = tempfile::tempdir().unwrap();
        let mut w = LogWriter::new(d.path(), None, None).disabled(true);
        w.write(Stream::Stdout, b"hello\n", "T");
        assert!(!d.path().join("container-json.log").exists());
        assert_eq!(w.dropped_bytes(), 0);
    }

    #[test]
    fn failed_writes_are_counted_and_recorded() {
        let d = tempfile::tempdir().unwrap();
        // The log path is a directory: every open fails, the writer keeps going.
        std::fs::create_dir(d.path().join("container-json.log")).unwrap();
        let mut w = LogWriter::new(d.path(), None, None);
        w.write(Stream::Stdout, b"hello\n", "T");
        w.write(Stream::Stderr, b"abc", "T");
        assert_eq!(w.dropped_bytes(), 9);
        let v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(d.path().join("log-errors.json")).unwrap())
                .unwrap();
        assert_eq!(v["dropped_bytes"], 9);
        assert!(
            v["last_error"]
                .as_str()
                .unwrap()
                .contains("container-json.log"),
            "{v}"
        );
    }
}
