//! Reading the monitor's json-file log: selecting lines by stream, time and
//! tail, and following the file while the container runs.

use crate::{LogChunk, LogOptions};
use std::collections::VecDeque;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use silo_monitor::protocol::LOG_FILE;
/// How often a follower looks for new output.
const POLL: Duration = Duration::from_millis(50);

/// One decoded json-file line.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Entry {
    pub stream: u8,
    pub log: String,
    pub time: String,
    /// `time` as unix seconds (0 when unparsable).
    pub at: f64,
}

#[derive(serde::Deserialize)]
struct Raw {
    #[serde(default)]
    log: String,
    #[serde(default)]
    stream: String,
    #[serde(default)]
    time: String,
}

/// Parses an RFC 3339 time ("2026-11-29T12:00:00.123456789Z" or with a
/// numeric offset) into unix seconds.
pub(crate) fn parse_time(s: &str) -> Option<f64> {
    let (secs, nanos) = silo_units::parse_rfc3339(s).ok()?;
    Some(secs as f64 + f64::from(nanos) / 1e9)
}

/// Decodes one json-file line; None for garbage (a torn write).
pub(crate) fn decode(line: &[u8]) -> Option<Entry> {
    let raw: Raw = serde_json::from_slice(line).ok()?;
    let stream = if raw.stream == "stderr" { 2 } else { 1 };
    Some(Entry {
        stream,
        at: parse_time(&raw.time).unwrap_or(0.0),
        log: raw.log,
        time: raw.time,
    })
}

/// Whether an entry passes the stream and time filters.
fn wanted(e: &Entry, opts: &LogOptions) -> bool {
    let stream_ok = (e.stream == 1 && opts.stdout) || (e.stream == 2 && opts.stderr);
    stream_ok
        && (opts.since <= 0.0 || e.at >= opts.since)
        && (opts.until <= 0.0 || e.at <= opts.until)
}

/// Turns an entry into the chunk sent to the client.
fn chunk(e: Entry, opts: &LogOptions) -> LogChunk {
    let mut bytes = Vec::with_capacity(e.log.len() + 32);
    if opts.timestamps {
        bytes.extend_from_slice(e.time.as_bytes());
        bytes.push(b' ');
    }
    bytes.extend_from_slice(e.log.as_bytes());
    LogChunk {
        stream: e.stream,
        bytes,
    }
}

/// Selects from complete lines: filters, then keeps the last `tail`.
#[cfg(test)]
pub(crate) fn select(data: &[u8], opts: &LogOptions) -> Vec<LogChunk> {
    let mut picked: VecDeque<Entry> = VecDeque::new();
    for line in data.split(|&c| c == b'\n') {
        if line.is_empty() {
            continue;
        }
        let Some(e) = decode(line) else { continue };
        if !wanted(&e, opts) {
            continue;
        }
        picked.push_back(e);
        if let Some(n) = opts.tail {
            while picked.len() > n {
                picked.pop_front();
            }
        }
    }
    picked.into_iter().map(|e| chunk(e, opts)).collect()
}

/// Log chunks as they are read.
type Chunks = Box<dyn Iterator<Item = LogChunk> + Send>;

/// How much is read at a time, forwards or backwards.
const BLOCK: usize = 64 * 1024;

/// The rotated log files, oldest first (`.N` … `.1`).
fn rotated_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for k in 1.. {
        let p = silo_monitor::protocol::rotated_log(dir, k);
        if !p.exists() {
            break;
        }
        out.push(p);
    }
    out.reverse();
    out
}

/// Calls `each` with the complete lines of `f` before `end`, last first,
/// until it returns false. Memory: one block and the longest line.
fn lines_backwards(
    f: &mut File,
    end: u64,
    mut each: impl FnMut(&[u8]) -> bool,
) -> std::io::Result<bool> {
    let mut pos = end;
    let mut carry: Vec<u8> = Vec::new();
    while pos > 0 {
        let n = (BLOCK as u64).min(pos);
        pos -= n;
        let mut buf = vec![0u8; n as usize];
        f.seek(SeekFrom::Start(pos))?;
        f.read_exact(&mut buf)?;
        buf.extend_from_slice(&carry);
        let mut line_end = buf.len();
        while let Some(i) = buf[..line_end].iter().rposition(|&c| c == b'\n') {
            let line = &buf[i + 1..line_end];
            if !line.is_empty() && !each(line) {
                return Ok(false);
            }
            line_end = i;
        }
        carry = buf[..line_end].to_vec();
    }
    Ok(carry.is_empty() || each(&carry))
}

/// The last `n` wanted entries of the files (oldest first; the last one
/// read up to `end`), read from the end: bounded by `n`, not by the log.
fn tail(files: Vec<(File, u64)>, n: usize, opts: &LogOptions) -> Vec<LogChunk> {
    let mut picked: Vec<Entry> = Vec::new();
    for (mut f, end) in files.into_iter().rev() {
        if picked.len() >= n {
            break;
        }
        let _ = lines_backwards(&mut f, end, |line| {
            if let Some(e) = decode(line) {
                if wanted(&e, opts) {
                    picked.push(e);
                }
            }
            picked.len() < n
        });
    }
    picked.reverse();
    picked.into_iter().map(|e| chunk(e, opts)).collect()
}

/// The wanted entries of the files (oldest first), read forwards one
/// block at a time.
struct Forward {
    files: VecDeque<std::io::BufReader<std::io::Take<File>>>,
    line: Vec<u8>,
    opts: LogOptions,
}

impl Iterator for Forward {
    type Item = LogChunk;

    fn next(&mut self) -> Option<LogChunk> {
        use std::io::BufRead;
        loop {
            let r = self.files.front_mut()?;
            self.line.clear();
            match r.read_until(b'\n', &mut self.line) {
                Ok(0) | Err(_) => {
                    self.files.pop_front();
                }
                Ok(_) => {
                    // A torn last line (no newline) is skipped.
                    if self.line.last() != Some(&b'\n') {
                        continue;
                    }
                    let Some(e) = decode(&self.line[..self.line.len() - 1]) else {
                        continue;
                    };
                    if self.opts.until > 0.0 && e.at > self.opts.until {
                        self.files.clear();
                        return None;
                    }
                    if wanted(&e, &self.opts) {
                        return Some(chunk(e, &self.opts));
                    }
                }
            }
        }
    }
}

/// The output so far: the wanted entries of the rotated files and of the
/// current file's complete lines, the open current file, and where its
/// complete lines end (where a follower goes on).
fn history(dir: &Path, opts: &LogOptions) -> std::io::Result<(Chunks, Option<File>, u64)> {
    let mut files: Vec<(File, u64)> = Vec::new();
    for p in rotated_files(dir) {
        match File::open(&p) {
            Ok(f) => {
                let len = f.metadata()?.len();
                files.push((f, len));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    let current = match File::open(dir.join(LOG_FILE)) {
        Ok(mut f) => {
            let len = f.metadata()?.len();
            let whole = whole_lines_end(&mut f, len)?;
            Some((f, whole))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e),
    };
    let mut follow_from = None;
    if let Some((f, whole)) = current {
        follow_from = Some((f.try_clone()?, whole));
        files.push((f, whole));
    }
    let past: Chunks = match opts.tail {
        Some(n) => Box::new(tail(files, n, opts).into_iter()),
        None => {
            let mut readers = VecDeque::new();
            for (mut f, end) in files {
                f.seek(SeekFrom::Start(0))?;
                readers.push_back(std::io::BufReader::with_capacity(BLOCK, f.take(end)));
            }
            Box::new(Forward {
                files: readers,
                line: Vec::new(),
                opts: opts.clone(),
            })
        }
    };
    Ok(match follow_from {
        Some((f, whole)) => (past, Some(f), whole),
        None => (past, None, 0),
    })
}

/// Where the complete lines of a file of `len` bytes end (a partial last
/// line is the monitor's write in progress).
fn whole_lines_end(f: &mut File, len: u64) -> std::io::Result<u64> {
    let mut end = len;
    while end > 0 {
        let n = (BLOCK as u64).min(end);
        let mut buf = vec![0u8; n as usize];
        f.seek(SeekFrom::Start(end - n))?;
        f.read_exact(&mut buf)?;
        if let Some(i) = buf.iter().rposition(|&c| c == b'\n') {
            return Ok(end - n + i as u64 + 1);
        }
        end -= n;
    }
    Ok(0)
}

/// Returns the log chunks; with `follow`, `alive` is polled and the
/// iterator keeps reading until it returns false and the file is drained.
pub(crate) fn open(
    dir: &Path,
    opts: LogOptions,
    alive: Box<dyn Fn() -> bool + Send>,
) -> std::io::Result<Box<dyn Iterator<Item = LogChunk> + Send>> {
    let (past, file, offset) = history(dir, &opts)?;
    if !opts.follow {
        return Ok(past);
    }
    Ok(Box::new(Follower {
        path: dir.join(LOG_FILE),
        past: Some(past),
        pending: VecDeque::new(),
        file,
        offset,
        partial: Vec::new(),
        opts,
        alive,
        done: false,
    }))
}

/// Follows only what is appended from now on (live attach output).
pub(crate) fn follow_new(
    dir: &Path,
    opts: LogOptions,
    alive: Box<dyn Fn() -> bool + Send>,
) -> Box<dyn Iterator<Item = LogChunk> + Send> {
    let path = dir.join(LOG_FILE);
    let (file, offset) = match File::open(&path) {
        Ok(f) => {
            let len = f.metadata().map(|m| m.len()).unwrap_or(0);
            (Some(f), len)
        }
        Err(_) => (None, 0),
    };
    Box::new(Follower {
        path,
        past: None,
        pending: VecDeque::new(),
        file,
        offset,
        partial: Vec::new(),
        opts,
        alive,
        done: false,
    })
}

/// Streams new lines as the monitor appends them.
struct Follower {
    path: PathBuf,
    /// The output from before, sent first.
    past: Option<Box<dyn Iterator<Item = LogChunk> + Send>>,
    pending: VecDeque<LogChunk>,
    file: Option<File>,
    offset: u64,
    partial: Vec<u8>,
    opts: LogOptions,
    alive: Box<dyn Fn() -> bool + Send>,
    done: bool,
}

impl Follower {
    /// Reads whatever was appended; true when something new was read.
    fn pump(&mut self) -> bool {
        // Rotation: the path now names another (or a shorter) file.
        if let (Some(f), Ok(now)) = (&self.file, std::fs::metadata(&self.path)) {
            let same = f.metadata().map(|m| m.ino() == now.ino()).unwrap_or(false);
            if !same || now.len() < self.offset {
                self.file = None;
            }
        }
        if self.file.is_none() {
            match File::open(&self.path) {
                Ok(f) => {
                    self.file = Some(f);
                    self.offset = 0;
                    self.partial.clear();
                }
                Err(_) => return false,
            }
        }
        let Some(f) = self.file.as_mut() else {
            return false;
        };
        if f.seek(SeekFrom::Start(self.offset)).is_err() {
            return false;
        }
        let mut buf = Vec::new();
        let n = match f.read_to_end(&mut buf) {
            Ok(n) => n,
            Err(_) => return false,
        };
        if n == 0 {
            return false;
        }
        self.offset += n as u64;
        self.partial.extend_from_slice(&buf);
        let whole = match self.partial.iter().rposition(|&c| c == b'\n') {
            Some(p) => p + 1,
            None => return true,
        };
        let lines: Vec<u8> = self.partial.drain(..whole).collect();
        let mut opts = self.opts.clone();
        opts.tail = None;
        for line in lines.split(|&c| c == b'\n') {
            if line.is_empty() {
                continue;
            }
            let Some(e) = decode(line) else { continue };
            if opts.until > 0.0 && e.at > opts.until {
                self.done = true;
                break;
            }
            if wanted(&e, &opts) {
                self.pending.push_back(chunk(e, &opts));
            }
        }
        true
    }
}

impl Iterator for Follower {
    type Item = LogChunk;

    fn next(&mut self) -> Option<LogChunk> {
        if let Some(past) = self.past.as_mut() {
            match past.next() {
                Some(c) => return Some(c),
                None => self.past = None,
            }
        }
        loop {
            if let Some(c) = self.pending.pop_front() {
                return Some(c);
            }
            if self.done {
                return None;
            }
            // Check liveness before reading so output written just before
            // the exit is still drained.
            let alive = (self.alive)();
            if self.pump() {
                continue;
            }
            if !alive {
                self.done = true;
                continue;
            }
            std::thread::sleep(POLL);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(stream: &str, log: &str, time: &str) -> String {
        serde_json::json!({"log": log, "stream": stream, "time": time}).to_string() + "\n"
    }

    fn fixture() -> String {
        [
            line("stdout", "one\n", "2026-11-29T12:00:00.000000001Z"),
            line("stderr", "two\n", "2026-11-29T12:00:01.5Z"),
            line("stdout", "three\n", "2026-11-29T12:00:02Z"),
            line("stdout", "four\n", "2026-11-29T12:00:03.25Z"),
        ]
        .concat()
    }

    fn all() -> LogOptions {
        LogOptions {
            stdout: true,
            stderr: true,
            ..Default::default()
        }
    }

    fn text(c: &[LogChunk]) -> Vec<(u8, String)> {
        c.iter()
            .map(|c| (c.stream, String::from_utf8_lossy(&c.bytes).into_owned()))
            .collect()
    }

    #[test]
    fn parses_rfc3339() {
        assert_eq!(parse_time("1970-01-01T00:00:00Z"), Some(0.0));
        assert_eq!(parse_time("2026-11-29T12:00:00Z"), Some(1_795_953_600.0));
        assert_eq!(
            parse_time("2026-11-29T13:00:00+01:00"),
            Some(1_795_953_600.0)
        );
        let t = parse_time("2026-11-29T12:00:01.5Z").unwrap();
        assert!((t - 1_795_953_601.5).abs() < 1e-6);
        assert_eq!(parse_time("garbage"), None);
    }

    #[test]
    fn filters_streams() {
        let data = fixture();
        let mut o = all();
        o.stderr = false;
        let got = text(&select(data.as_bytes(), &o));
        assert_eq!(
            got,
            vec![
                (1, "one\n".into()),
                (1, "three\n".into()),
                (1, "four\n".into())
            ]
        );
        let mut o = all();
        o.stdout = false;
        assert_eq!(
            text(&select(data.as_bytes(), &o)),
            vec![(2, "two\n".into())]
        );
    }

    #[test]
    fn tail_and_timestamps() {
        let data = fixture();
        let mut o = all();
        o.tail = Some(2);
        o.timestamps = true;
        assert_eq!(
            text(&select(data.as_bytes(), &o)),
            vec![
                (1, "2026-11-29T12:00:02Z three\n".into()),
                (1, "2026-11-29T12:00:03.25Z four\n".into())
            ]
        );
        o.tail = Some(0);
        assert!(select(data.as_bytes(), &o).is_empty());
    }

    #[test]
    fn since_and_until() {
        let data = fixture();
        let mut o = all();
        o.since = 1_795_953_601.0;
        o.until = 1_795_953_602.0;
        assert_eq!(
            text(&select(data.as_bytes(), &o)),
            vec![(2, "two\n".into()), (1, "three\n".into())]
        );
    }

    #[test]
    fn reads_rotated_first_and_skips_torn_lines() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(format!("{LOG_FILE}.1")),
            line("stdout", "old\n", "2026-11-29T11:00:00Z"),
        )
        .unwrap();
        let cur = fixture() + "{\"log\":\"torn";
        std::fs::write(dir.path().join(LOG_FILE), cur).unwrap();
        let got: Vec<_> = open(dir.path(), all(), Box::new(|| false))
            .unwrap()
            .collect();
        let got = text(&got);
        assert_eq!(got.len(), 5);
        assert_eq!(got[0], (1, "old\n".into()));
        assert_eq!(got[4], (1, "four\n".into()));
    }

    #[test]
    fn tail_reads_from_the_end_across_rotated_files() {
        let dir = tempfile::tempdir().unwrap();
        let many = |from: usize, to: usize| -> String {
            (from..to)
                .map(|i| line("stdout", &format!("l{i}\n"), "2026-11-29T12:00:00Z"))
                .collect()
        };
        // .2 is the oldest, then .1, then the current file with a torn end.
        std::fs::write(dir.path().join(format!("{LOG_FILE}.2")), many(0, 5000)).unwrap();
        std::fs::write(dir.path().join(format!("{LOG_FILE}.1")), many(5000, 5003)).unwrap();
        std::fs::write(
            dir.path().join(LOG_FILE),
            many(5003, 5005) + "{\"log\":\"to",
        )
        .unwrap();
        let tail = |n: usize| {
            let mut o = all();
            o.tail = Some(n);
            text(
                &open(dir.path(), o, Box::new(|| false))
                    .unwrap()
                    .collect::<Vec<_>>(),
            )
        };
        assert_eq!(tail(1), vec![(1, "l5004\n".into())]);
        let t = tail(7);
        assert_eq!(t.len(), 7);
        assert_eq!(t[0], (1, "l4998\n".into()));
        assert_eq!(t[6], (1, "l5004\n".into()));
        assert!(tail(0).is_empty());
        assert_eq!(tail(100_000).len(), 5005);
        // Without a tail, every file in order.
        let everything: Vec<_> = open(dir.path(), all(), Box::new(|| false))
            .unwrap()
            .collect();
        assert_eq!(everything.len(), 5005);
        assert_eq!(everything[0].bytes, b"l0\n");
    }

    #[test]
    fn follow_reads_appends_until_not_alive() {
        use std::io::Write;
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::Arc;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(LOG_FILE);
        std::fs::write(&path, line("stdout", "first\n", "2026-11-29T12:00:00Z")).unwrap();
        let alive = Arc::new(AtomicBool::new(true));
        let a2 = alive.clone();
        let mut o = all();
        o.follow = true;
        let mut it = open(dir.path(), o, Box::new(move || a2.load(Ordering::SeqCst))).unwrap();
        assert_eq!(it.next().unwrap().bytes, b"first\n");
        let writer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(120));
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .open(&path)
                .unwrap();
            let l = line("stderr", "second\n", "2026-11-29T12:00:01Z");
            // A line written in two pieces is delivered once, whole.
            f.write_all(&l.as_bytes()[..10]).unwrap();
            f.flush().unwrap();
            std::thread::sleep(Duration::from_millis(120));
            f.write_all(&l.as_bytes()[10..]).unwrap();
            alive.store(false, Ordering::SeqCst);
        });
        let c = it.next().unwrap();
        assert_eq!((c.stream, c.bytes.as_slice()), (2, b"second\n".as_slice()));
        assert!(it.next().is_none());
        writer.join().unwrap();
    }
}
