//! Accounting: reading CPU, memory, pids and block IO counters from v1 or v2 files into one shape.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Stats {
    pub cpu: CpuStats,
    pub memory: MemoryStats,
    pub pids: PidsStats,
    pub blkio: BlkioStats,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct CpuStats {
    pub usage_ns: u64,
    pub user_ns: u64,
    pub system_ns: u64,
    pub throttled_periods: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct MemoryStats {
    pub current: u64,
    pub peak: u64,
    /// None = unlimited.
    pub limit: Option<u64>,
    pub oom_kills: u64,
    /// v2: memory.events "oom"; v1 has no separate count, so this equals `oom_kills` there.
    pub oom_events: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct PidsStats {
    pub current: u64,
    pub limit: Option<u64>,
    /// pids.events "max": forks refused because of the limit.
    pub limit_hits: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct BlkioStats {
    pub read_bytes: u64,
    pub write_bytes: u64,
    pub read_ops: u64,
    pub write_ops: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum StatsError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}: cannot parse {content:?} as a counter")]
    Parse { path: PathBuf, content: String },
}

/// USER_HZ: cpuacct.stat counts in 1/100 s ticks.
const NS_PER_TICK: u64 = 10_000_000;
/// v1 reports "unlimited" as a huge page-aligned number.
const V1_UNLIMITED: u64 = 1 << 62;

/// Reads a file; a missing file is `None` (the counter is not offered here).
fn read_opt(path: &Path) -> Result<Option<String>, StatsError> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(StatsError::Read {
            path: path.to_path_buf(),
            source,
        }),
    }
}

fn parse_u64(path: &Path, s: &str) -> Result<u64, StatsError> {
    s.trim().parse::<u64>().map_err(|_| StatsError::Parse {
        path: path.to_path_buf(),
        content: s.trim().to_string(),
    })
}

fn read_u64(path: &Path) -> Result<Option<u64>, StatsError> {
    read_opt(path)?.map(|s| parse_u64(path, &s)).transpose()
}

/// A v2-style limit: "max" is None.
fn read_max(path: &Path) -> Result<Option<Option<u64>>, StatsError> {
    match read_opt(path)? {
        None => Ok(None),
        Some(s) if s.trim() == "max" => Ok(Some(None)),
        Some(s) => Ok(Some(Some(parse_u64(path, &s)?))),
    }
}

/// Reads "key value" lines into a map (cpu.stat, memory.events, pids.events, cpuacct.stat, ...).
fn read_keyed(path: &Path) -> Result<Option<BTreeMap<String, u64>>, StatsError> {
    let Some(text) = read_opt(path)? else {
        return Ok(None);
    };
    Ok(Some(parse_keyed(path, &text)?))
}

pub(crate) fn parse_keyed(path: &Path, text: &str) -> Result<BTreeMap<String, u64>, StatsError> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let mut it = line.split_whitespace();
        if let (Some(k), Some(v)) = (it.next(), it.next()) {
            out.insert(k.to_string(), parse_u64(path, v)?);
        }
    }
    Ok(out)
}

/// Sums v1 blkio lines of the form "maj:min Read N" / "maj:min Write N" (the "Total" line is skipped).
pub(crate) fn parse_blkio_v1(path: &Path, text: &str) -> Result<(u64, u64), StatsError> {
    let (mut read, mut write) = (0u64, 0u64);
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() == 3 {
            match f[1] {
                "Read" => read = read.saturating_add(parse_u64(path, f[2])?),
                "Write" => write = write.saturating_add(parse_u64(path, f[2])?),
                _ => {}
            }
        }
    }
    Ok((read, write))
}

/// Sums io.stat lines "maj:min rbytes=N wbytes=N rios=N wios=N ...".
pub(crate) fn parse_io_stat(path: &Path, text: &str) -> Result<BlkioStats, StatsError> {
    let mut s = BlkioStats::default();
    for line in text.lines() {
        for kv in line.split_whitespace().skip(1) {
            let Some((k, v)) = kv.split_once('=') else {
                continue;
            };
            let slot = match k {
                "rbytes" => &mut s.read_bytes,
                "wbytes" => &mut s.write_bytes,
                "rios" => &mut s.read_ops,
                "wios" => &mut s.write_ops,
                _ => continue,
            };
            *slot = slot.saturating_add(parse_u64(path, v)?);
        }
    }
    Ok(s)
}

pub(crate) fn read_v1(dirs: &BTreeMap<String, PathBuf>) -> Result<Stats, StatsError> {
    let mut st = Stats::default();
    if let Some(d) = dirs.get("cpuacct") {
        st.cpu.usage_ns = read_u64(&d.join("cpuacct.usage"))?.unwrap_or(0);
        let user = read_u64(&d.join("cpuacct.usage_user"))?;
        let sys = read_u64(&d.join("cpuacct.usage_sys"))?;
        match (user, sys) {
            (Some(u), Some(s)) => {
                st.cpu.user_ns = u;
                st.cpu.system_ns = s;
            }
            _ => {
                if let Some(m) = read_keyed(&d.join("cpuacct.stat"))? {
                    st.cpu.user_ns = m.get("user").copied().unwrap_or(0) * NS_PER_TICK;
                    st.cpu.system_ns = m.get("system").copied().unwrap_or(0) * NS_PER_TICK;
                }
            }
        }
    }
    if let Some(d) = dirs.get("cpu") {
        if let Some(m) = read_keyed(&d.join("cpu.stat"))? {
            st.cpu.throttled_periods = m.get("nr_throttled").copied().unwrap_or(0);
        }
    }
    if let Some(d) = dirs.get("memory") {
        st.memory.current = read_u64(&d.join("memory.usage_in_bytes"))?.unwrap_or(0);
        st.memory.peak = read_u64(&d.join("memory.max_usage_in_bytes"))?.unwrap_or(0);
        st.memory.limit = read_u64(&d.join("memory.limit_in_bytes"))?.filter(|l| *l < V1_UNLIMITED);
        if let Some(m) = read_keyed(&d.join("memory.oom_control"))? {
            st.memory.oom_kills = m.get("oom_kill").copied().unwrap_or(0);
            st.memory.oom_events = st.memory.oom_kills;
        }
    }
    if let Some(d) = dirs.get("pids") {
        read_pids(d, &mut st.pids)?;
    }
    if let Some(d) = dirs.get("blkio") {
        let bytes = pick(d, "blkio.throttle.io_service_bytes")?;
        let ops = pick(d, "blkio.throttle.io_serviced")?;
        if let Some((p, text)) = bytes {
            (st.blkio.read_bytes, st.blkio.write_bytes) = parse_blkio_v1(&p, &text)?;
        }
        if let Some((p, text)) = ops {
            (st.blkio.read_ops, st.blkio.write_ops) = parse_blkio_v1(&p, &text)?;
        }
    }
    Ok(st)
}

/// The `_recursive` variant of a blkio file, or the plain one when that is missing.
fn pick(dir: &Path, base: &str) -> Result<Option<(PathBuf, String)>, StatsError> {
    let rec = dir.join(format!("{base}_recursive"));
    if let Some(t) = read_opt(&rec)? {
        return Ok(Some((rec, t)));
    }
    let plain = dir.join(base);
    Ok(read_opt(&plain)?.map(|t| (plain, t)))
}

fn read_pids(d: &Path, p: &mut PidsStats) -> Result<(), StatsError> {
    p.current = read_u64(&d.join("pids.current"))?.unwrap_or(0);
    p.limit = read_max(&d.join("pids.max"))?.flatten();
    if let Some(m) = read_keyed(&d.join("pids.events"))? {
        p.limit_hits = m.get("max").copied().unwrap_or(0);
    }
    Ok(())
}

pub(crate) fn read_v2(d: &Path) -> Result<Stats, StatsError> {
    let mut st = Stats::default();
    if let Some(m) = read_keyed(&d.join("cpu.stat"))? {
        let us = |k: &str| m.get(k).copied().unwrap_or(0).saturating_mul(1000);
        st.cpu.usage_ns = us("usage_usec");
        st.cpu.user_ns = us("user_usec");
        st.cpu.system_ns = us("system_usec");
        st.cpu.throttled_periods = m.get("nr_throttled").copied().unwrap_or(0);
    }
    st.memory.current = read_u64(&d.join("memory.current"))?.unwrap_or(0);
    st.memory.peak = read_u64(&d.join("memory.peak"))?.unwrap_or(0);
    st.memory.limit = read_max(&d.join("memory.max"))?.flatten();
    if let Some(m) = read_keyed(&d.join("memory.events"))? {
        st.memory.oom_kills = m.get("oom_kill").copied().unwrap_or(0);
        st.memory.oom_events = m.get("oom").copied().unwrap_or(0);
    }
    read_pids(d, &mut st.pids)?;
    let io = d.join("io.stat");
    if let Some(text) = read_opt(&io)? {
        st.blkio = parse_io_stat(&io, &text)?;
    }
    Ok(st)
}
