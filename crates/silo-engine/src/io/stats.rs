//! Docker's stats, top and the HCS views, built from the compute service's
//! job accounting and the host's /proc.

use bollard_stubs::models::*;
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Mutex, OnceLock};

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

/// One Docker stats sample from job accounting.
pub(crate) fn convert(
    s: &silo_job::Stats,
    system_ns: u64,
    cpus: u32,
    read: String,
) -> (ContainerCpuStats, ContainerStatsResponse) {
    let cpu = ContainerCpuStats {
        cpu_usage: Some(ContainerCpuUsage {
            total_usage: Some(s.cpu.usage_ns),
            percpu_usage: None,
            usage_in_kernelmode: Some(s.cpu.system_ns),
            usage_in_usermode: Some(s.cpu.user_ns),
        }),
        system_cpu_usage: Some(system_ns),
        online_cpus: Some(cpus),
        throttling_data: Some(ContainerThrottlingData {
            throttled_periods: Some(s.cpu.throttled_periods),
            ..Default::default()
        }),
    };
    // Unlimited memory: Docker reports the host's memory.
    let limit = s.memory.limit.unwrap_or_else(host_memory);
    let blk = |op: &str, value: u64| ContainerBlkioStatEntry {
        major: Some(0),
        minor: Some(0),
        op: Some(op.into()),
        value: Some(value),
    };
    let resp = ContainerStatsResponse {
        read: Some(read),
        cpu_stats: Some(cpu.clone()),
        memory_stats: Some(ContainerMemoryStats {
            usage: Some(s.memory.current),
            max_usage: Some(s.memory.peak),
            limit: Some(limit),
            failcnt: Some(s.memory.oom_events),
            stats: Some(HashMap::new()),
            ..Default::default()
        }),
        pids_stats: Some(ContainerPidsStats {
            current: Some(s.pids.current),
            limit: s.pids.limit,
        }),
        blkio_stats: Some(ContainerBlkioStats {
            io_service_bytes_recursive: Some(vec![
                blk("read", s.blkio.read_bytes),
                blk("write", s.blkio.write_bytes),
            ]),
            io_serviced_recursive: Some(vec![
                blk("read", s.blkio.read_ops),
                blk("write", s.blkio.write_ops),
            ]),
            ..Default::default()
        }),
        num_procs: Some(0),
        os_type: Some("linux".into()),
        ..Default::default()
    };
    (cpu, resp)
}

/// Total host memory in bytes.
fn host_memory() -> u64 {
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

/// The previous sample per container (Docker's precpu_stats / preread).
fn previous() -> &'static Mutex<HashMap<String, (String, ContainerCpuStats)>> {
    static PREV: OnceLock<Mutex<HashMap<String, (String, ContainerCpuStats)>>> = OnceLock::new();
    PREV.get_or_init(Default::default)
}

/// Fills in precpu_stats/preread from the last sample and remembers this one.
pub(crate) fn with_previous(
    id: &str,
    cpu: ContainerCpuStats,
    mut resp: ContainerStatsResponse,
) -> ContainerStatsResponse {
    let mut prev = match previous().lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    };
    let read = resp.read.clone().unwrap_or_default();
    match prev.insert(id.to_string(), (read, cpu)) {
        Some((t, c)) => {
            resp.preread = Some(t);
            resp.precpu_stats = Some(c);
        }
        None => {
            resp.preread = Some("0001-01-01T00:00:00Z".into());
            resp.precpu_stats = Some(ContainerCpuStats::default());
        }
    }
    resp
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
    use super::*;

    fn sample() -> silo_job::Stats {
        let mut s = silo_job::Stats::default();
        s.cpu.usage_ns = 5_000_000;
        s.cpu.user_ns = 3_000_000;
        s.cpu.system_ns = 2_000_000;
        s.memory.current = 4096;
        s.memory.peak = 8192;
        s.memory.limit = Some(16 << 20);
        s.memory.oom_events = 1;
        s.pids.current = 3;
        s.pids.limit = Some(100);
        s.blkio.read_bytes = 10;
        s.blkio.write_bytes = 20;
        s
    }

    #[test]
    fn converts_job_stats() {
        let (cpu, r) = convert(&sample(), 1_000_000_000, 2, "now".into());
        let u = r.cpu_stats.as_ref().unwrap().cpu_usage.as_ref().unwrap();
        assert_eq!(u.total_usage, Some(5_000_000));
        assert_eq!(u.usage_in_kernelmode, Some(2_000_000));
        assert_eq!(u.usage_in_usermode, Some(3_000_000));
        assert_eq!(cpu.system_cpu_usage, Some(1_000_000_000));
        assert_eq!(cpu.online_cpus, Some(2));
        let m = r.memory_stats.as_ref().unwrap();
        assert_eq!(
            (m.usage, m.max_usage, m.limit, m.failcnt),
            (Some(4096), Some(8192), Some(16 << 20), Some(1))
        );
        let p = r.pids_stats.as_ref().unwrap();
        assert_eq!((p.current, p.limit), (Some(3), Some(100)));
        let b = r
            .blkio_stats
            .as_ref()
            .unwrap()
            .io_service_bytes_recursive
            .as_ref()
            .unwrap();
        assert_eq!(b[0].op.as_deref(), Some("read"));
        assert_eq!(b[0].value, Some(10));
        assert_eq!(b[1].value, Some(20));
        let j = serde_json::to_value(&r).unwrap();
        assert_eq!(j["cpu_stats"]["cpu_usage"]["total_usage"], 5_000_000);
        assert_eq!(j["memory_stats"]["limit"], 16 << 20);
    }

    #[test]
    fn unlimited_memory_reports_host_memory() {
        let mut s = sample();
        s.memory.limit = None;
        let (_, r) = convert(&s, 0, 1, "now".into());
        assert!(r.memory_stats.unwrap().limit.unwrap() > 1 << 20);
    }

    #[test]
    fn previous_sample_becomes_precpu() {
        let id = "prev-test";
        let (c1, r1) = convert(&sample(), 100, 1, "t1".into());
        let r1 = with_previous(id, c1, r1);
        assert_eq!(r1.precpu_stats.unwrap().system_cpu_usage, None);
        let (c2, r2) = convert(&sample(), 200, 1, "t2".into());
        let r2 = with_previous(id, c2, r2);
        assert_eq!(r2.preread.as_deref(), Some("t1"));
        assert_eq!(r2.precpu_stats.unwrap().system_cpu_usage, Some(100));
    }

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
