//! Gives back the memory only start-up needed, so that an idle monitor
//! (one per container) stays small: free heap, the deep stack pages that
//! `create` touched, and our mappings of the binary's code, which fault back
//! in from the (shared) page cache as the poll loop needs them.

use std::path::Path;

/// What [`trim`] released, for monitor.log.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Trimmed {
    pub stack_bytes: usize,
    pub mapped_bytes: usize,
}

/// One mapping line of /proc/<pid>/smaps with the fields we need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    pub start: usize,
    pub end: usize,
    pub writable: bool,
    pub path: String,
    /// kB of anonymous (copied-on-write) pages: such pages must be kept.
    pub anonymous_kb: u64,
}

/// Parses the text of /proc/<pid>/smaps.
pub fn parse_smaps(text: &str) -> Vec<Mapping> {
    let mut out: Vec<Mapping> = Vec::new();
    for line in text.lines() {
        let mut parts = line.split_whitespace();
        let Some(first) = parts.next() else { continue };
        if let Some((a, b)) = first.split_once('-') {
            if let (Ok(start), Ok(end)) =
                (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16))
            {
                let perms = parts.next().unwrap_or("");
                let path = parts.nth(3).unwrap_or("").to_string();
                out.push(Mapping {
                    start,
                    end,
                    writable: perms.contains('w'),
                    path,
                    anonymous_kb: 0,
                });
                continue;
            }
        }
        if first == "Anonymous:" {
            if let (Some(m), Some(v)) = (out.last_mut(), parts.next()) {
                m.anonymous_kb = v.parse().unwrap_or(u64::MAX);
            }
        }
    }
    out
}

/// The mappings of `exe` that only hold page-cache pages (read-only, no
/// copied-on-write page): dropping them loses nothing.
pub fn droppable<'a>(maps: &'a [Mapping], exe: &'a str) -> impl Iterator<Item = &'a Mapping> {
    maps.iter()
        .filter(move |m| m.path == exe && !m.writable && m.anonymous_kb == 0)
}

/// Marks a code mapping as randomly accessed, which turns off the kernel's
/// fault-around: a page fault then maps that one page, not up to 16.
#[inline(always)]
fn madvise_random(start: usize, len: usize) {
    // SAFETY: an access-pattern hint on a mapping we own; no data changes.
    unsafe { libc::madvise(start as *mut libc::c_void, len, libc::MADV_RANDOM) };
}

#[inline(always)]
fn madvise_dontneed(start: usize, len: usize) -> bool {
    // SAFETY: MADV_DONTNEED on page-aligned ranges that are either unused
    // stack below our stack pointer (re-faults as zero pages) or private file
    // mappings with no anonymous pages (re-fault from the file unchanged).
    unsafe { libc::madvise(start as *mut libc::c_void, len, libc::MADV_DONTNEED) == 0 }
}

// The functions that run after code pages have been dropped are inlined
// into the caller (the poll loop), so the idle monitor faults back as few
// code pages as possible before it blocks in poll.

/// Trims the calling (single-threaded) process. `proc_self` is normally
/// `/proc/self`.
#[inline(always)]
pub fn trim(proc_self: &Path) -> Trimmed {
    let done = trim_mappings(proc_self);
    // Last, so the buffers used above are given back too.
    // SAFETY: malloc_trim only hands free heap memory back to the kernel.
    unsafe { libc::malloc_trim(0) };
    done
}

#[inline(always)]
fn trim_mappings(proc_self: &Path) -> Trimmed {
    let mut done = Trimmed::default();
    let Ok(text) = std::fs::read_to_string(proc_self.join("smaps")) else {
        return done;
    };
    let maps = parse_smaps(&text);
    drop(text);
    let page = rustix::param::page_size();
    let marker = 0u8;
    let sp = std::hint::black_box(&marker) as *const u8 as usize;
    // Keep a generous margin below our frame: the red zone and the calls
    // made from here on.
    let keep_below = 4 * 1024;
    if let Some(stack) = maps.iter().find(|m| m.path == "[stack]") {
        if sp > stack.start + keep_below && sp <= stack.end {
            let top = (sp - keep_below) & !(page - 1);
            if top > stack.start && madvise_dontneed(stack.start, top - stack.start) {
                done.stack_bytes = top - stack.start;
            }
        }
    }
    if let Ok(exe) = std::fs::read_link(proc_self.join("exe")) {
        let exe = exe.to_string_lossy().into_owned();
        for m in droppable(&maps, &exe) {
            madvise_random(m.start, m.end - m.start);
            if madvise_dontneed(m.start, m.end - m.start) {
                done.mapped_bytes += m.end - m.start;
            }
        }
    }
    done
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMAPS: &str = "\
55d0c0000000-55d0c0010000 r--p 00000000 fe:00 1 /usr/bin/mon
Size:                 64 kB
Anonymous:             0 kB
55d0c0010000-55d0c0100000 r-xp 00010000 fe:00 1 /usr/bin/mon
Anonymous:             0 kB
55d0c0100000-55d0c0108000 r--p 00100000 fe:00 1 /usr/bin/mon
Anonymous:            32 kB
55d0c0108000-55d0c010a000 rw-p 00108000 fe:00 1 /usr/bin/mon
Anonymous:             8 kB
7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0                          [stack]
Anonymous:           132 kB
";

    #[test]
    fn only_clean_read_only_mappings_of_the_binary_are_dropped() {
        let maps = parse_smaps(SMAPS);
        assert_eq!(maps.len(), 5);
        assert_eq!(maps[4].path, "[stack]");
        assert_eq!(maps[4].anonymous_kb, 132);
        let d: Vec<_> = droppable(&maps, "/usr/bin/mon").map(|m| m.start).collect();
        // The relocated (RELRO) mapping has anonymous pages and is kept, as
        // is the writable data.
        assert_eq!(d, vec![0x55d0c0000000, 0x55d0c0010000]);
        assert_eq!(droppable(&maps, "/other").count(), 0);
    }

    #[test]
    fn trimming_ourselves_keeps_us_working() {
        // Run in a child so the test harness's threads are not involved.
        // SAFETY: the child only calls trim and _exit.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            let t = trim(Path::new("/proc/self"));
            let ok = t.mapped_bytes > 0 && format!("{t:?}").contains("Trimmed");
            // SAFETY: leaving the forked child without running destructors.
            unsafe { libc::_exit(if ok { 0 } else { 1 }) };
        }
        let mut st = 0;
        // SAFETY: waiting for the child we forked.
        unsafe { libc::waitpid(pid, &mut st, 0) };
        assert!(
            libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 0,
            "status {st}"
        );
    }
}
