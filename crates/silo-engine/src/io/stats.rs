//! Statistics samples, `top` and the HCS views, from the compute
//! service's job accounting and the host's /proc.

use std::path::Path;

/// One statistics sample of a running container.
#[derive(Debug, Clone)]
pub struct StatsSample {
    /// When it was read (RFC 3339).
    pub read: String,
    /// The job's accounting.
    pub job: silo_job::Stats,
    /// Host CPU time so far, in nanoseconds (for a CPU percentage).
    pub system_cpu_ns: u64,
    pub online_cpus: u32,
    /// The host's memory in bytes (the limit of an unlimited container).
    pub host_memory: u64,
    /// The container's network interfaces but loopback, by name.
    pub networks: Vec<(String, InterfaceCounters)>,
}

/// One interface's counters (from `/proc/<pid>/net/dev`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InterfaceCounters {
    pub rx_bytes: u64,
    pub rx_packets: u64,
    pub rx_errors: u64,
    pub rx_dropped: u64,
    pub tx_bytes: u64,
    pub tx_packets: u64,
    pub tx_errors: u64,
    pub tx_dropped: u64,
}

/// The interfaces listed in a `net/dev` file, loopback left out.
pub(crate) fn interfaces(net_dev: &Path) -> Vec<(String, InterfaceCounters)> {
    let text = std::fs::read_to_string(net_dev).unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let (name, rest) = l.split_once(':')?;
            let name = name.trim();
            let n: Vec<u64> = rest
                .split_whitespace()
                .map(|x| x.parse().unwrap_or(0))
                .collect();
            if name == "lo" || n.len() < 12 {
                return None;
            }
            Some((
                name.to_string(),
                InterfaceCounters {
                    rx_bytes: n[0],
                    rx_packets: n[1],
                    rx_errors: n[2],
                    rx_dropped: n[3],
                    tx_bytes: n[8],
                    tx_packets: n[9],
                    tx_errors: n[10],
                    tx_dropped: n[11],
                },
            ))
        })
        .collect()
}

/// Clock ticks per second for /proc/stat (USER_HZ).
fn user_hz() -> u64 {
    // SAFETY: sysconf has no memory-safety preconditions.
    let v = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if v > 0 {
        v as u64
    } else {
        100
    }
}

/// Host CPU time in ns (the "cpu" line of `<proc>/stat`) and online CPUs.
pub(crate) fn system_cpu(proc_root: &Path) -> (u64, u32) {
    let text = std::fs::read_to_string(proc_root.join("stat")).unwrap_or_default();
    let mut total = 0u64;
    let mut cpus = 0u32;
    for line in text.lines() {
        let mut f = line.split_whitespace();
        match f.next() {
            Some("cpu") => {
                // user nice system idle iowait irq softirq steal (guest is in user).
                total = f.take(8).filter_map(|v| v.parse::<u64>().ok()).sum();
            }
            Some(c) if c.starts_with("cpu") => cpus += 1,
            _ => {}
        }
    }
    (total.saturating_mul(1_000_000_000 / user_hz()), cpus.max(1))
}

/// Total host memory in bytes.
pub(crate) fn host_memory() -> u64 {
    // SAFETY: sysconf has no memory-safety preconditions.
    let (pages, size) = unsafe {
        (
            libc::sysconf(libc::_SC_PHYS_PAGES),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    if pages > 0 && size > 0 {
        pages as u64 * size as u64
    } else {
        0
    }
}

/// Filters `ps` output to the given pids: (titles, rows).
pub(crate) fn filter_ps(
    output: &str,
    pids: &[i32],
) -> Result<(Vec<String>, Vec<Vec<String>>), String> {
    let mut lines = output.lines();
    let header = lines.next().unwrap_or("");
    let titles: Vec<String> = header.split_whitespace().map(String::from).collect();
    let col = titles
        .iter()
        .position(|h| h == "PID")
        .ok_or_else(|| format!("Couldn't find PID field in ps output: {header:?}"))?;
    let mut rows = Vec::new();
    for line in lines {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let Some(pid) = fields.get(col).and_then(|p| p.parse::<i32>().ok()) else {
            continue;
        };
        if !pids.contains(&pid) {
            continue;
        }
        // The last column (the command) may contain spaces.
        let n = titles.len();
        let mut row: Vec<String> = fields
            .iter()
            .take(n.saturating_sub(1))
            .map(|s| s.to_string())
            .collect();
        if fields.len() >= n {
            row.push(fields[n - 1..].join(" "));
        }
        rows.push(row);
    }
    Ok((titles, rows))
}

/// Namespaces of a process, from `<proc>/<pid>/ns` links.
pub(crate) fn namespaces(proc_root: &Path, pid: i32) -> serde_json::Value {
    let mut out = serde_json::Map::new();
    if pid > 0 {
        if let Ok(rd) = std::fs::read_dir(proc_root.join(pid.to_string()).join("ns")) {
            for e in rd.flatten() {
                if let Ok(t) = std::fs::read_link(e.path()) {
                    out.insert(
                        e.file_name().to_string_lossy().into_owned(),
                        serde_json::Value::String(t.display().to_string()),
                    );
                }
            }
        }
    }
    serde_json::Value::Object(out)
}

#[cfg(test)]
mod tests {

    #[test]
    fn interfaces_but_loopback() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("dev");
        std::fs::write(
            &p,
            "Inter-|   Receive                                                |  Transmit\n face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    lo:     100       2    0    0    0     0          0         0      100       2    0    0    0     0       0          0\n  eth0:    1500      10    1    2    0     0          0         0      900       8    3    4    0     0       0          0\n",
        )
        .unwrap();
        let got = interfaces(&p);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0, "eth0");
        let c = got[0].1;
        assert_eq!(
            (c.rx_bytes, c.rx_packets, c.rx_errors, c.rx_dropped),
            (1500, 10, 1, 2)
        );
        assert_eq!(
            (c.tx_bytes, c.tx_packets, c.tx_errors, c.tx_dropped),
            (900, 8, 3, 4)
        );
        assert!(interfaces(&d.path().join("missing")).is_empty());
    }

    use super::*;

    #[test]
    fn system_cpu_from_proc_stat_fixture() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join("stat"),
            "cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 50 0 25 400 25 0 0 0 0 0\ncpu1 50 0 25 400 25 0 0 0 0 0\nintr 1\n",
        )
        .unwrap();
        let (ns, cpus) = system_cpu(d.path());
        assert_eq!(cpus, 2);
        assert_eq!(ns, 1000 * (1_000_000_000 / user_hz()));
    }

    #[test]
    fn ps_filtering_keeps_commands_with_spaces() {
        let out = "UID PID PPID C STIME TTY TIME CMD\nroot 1 0 0 12:00 ? 00:00:00 /sbin/init splash\nroot 42 1 0 12:00 ? 00:00:00 sleep 1000\n";
        let (t, rows) = filter_ps(out, &[42]).unwrap();
        assert_eq!(t.len(), 8);
        assert_eq!(
            rows,
            vec![vec![
                "root",
                "42",
                "1",
                "0",
                "12:00",
                "?",
                "00:00:00",
                "sleep 1000"
            ]]
        );
        assert!(filter_ps("A B\n", &[1]).is_err());
    }
}
