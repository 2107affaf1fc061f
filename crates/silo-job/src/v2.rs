//! Writing OCI resources into cgroup v2 interface files, converting v1-shaped values where needed.

use std::collections::BTreeMap;
use std::path::Path;

use silo_oci::{BlockIo, Cpu, Memory, Resources};

use crate::v1::{check_limit, check_page_size, check_weight, pids_max};
use crate::{write_field, ApplyError};

/// cpu.shares (2..=262144) to cpu.weight (1..=10000).
pub fn shares_to_weight(shares: u64) -> u64 {
    1 + ((shares - 2) * 9999) / 262142
}

/// blkio weight (10..=1000) to io.weight (1..=10000).
pub fn blkio_weight_to_io(w: u16) -> u64 {
    1 + (u64::from(w) - 10) * 9999 / 990
}

/// OCI memory.swap is memory+swap; v2 memory.swap.max is swap alone.
pub fn swap_value(limit: Option<i64>, swap: i64) -> Result<String, ApplyError> {
    const FIELD: &str = "linux.resources.memory.swap";
    if swap == -1 {
        return Ok("max".into());
    }
    match limit {
        None | Some(0) => Err(ApplyError::Invalid {
            field: FIELD.into(),
            reason: "a swap limit needs memory.limit set too (v2 limits swap separately)".into(),
        }),
        Some(-1) => Err(ApplyError::Invalid {
            field: FIELD.into(),
            reason: format!("{swap} is limited while memory.limit is unlimited"),
        }),
        Some(l) if swap < l => Err(ApplyError::Invalid {
            field: FIELD.into(),
            reason: format!("memory+swap {swap} is below the memory limit {l}"),
        }),
        Some(l) => Ok((swap - l).to_string()),
    }
}

fn max_or(v: i64) -> String {
    if v == -1 {
        "max".into()
    } else {
        v.to_string()
    }
}

pub(crate) fn apply(
    dir: &Path,
    r: &Resources,
    warnings: &mut Vec<String>,
) -> Result<(), ApplyError> {
    if let Some(m) = &r.memory {
        memory(dir, m, warnings)?;
    }
    if let Some(c) = &r.cpu {
        cpu(dir, c)?;
    }
    if let Some(p) = &r.pids {
        write_field(
            "linux.resources.pids.limit",
            &dir.join("pids.max"),
            &pids_max(p.limit),
        )?;
    }
    if let Some(b) = &r.block_io {
        io(dir, b)?;
    }
    for (i, h) in r.hugepage_limits.iter().enumerate() {
        let field = format!("linux.resources.hugepageLimits[{i}]");
        check_page_size(&field, &h.page_size)?;
        let file = dir.join(format!("hugetlb.{}.max", h.page_size));
        write_field(&field, &file, &h.limit.to_string())?;
    }
    if r.network.is_some() {
        warnings.push("linux.resources.network: no net_cls/net_prio on cgroup v2; ignored".into());
    }
    if r.rdma.is_some() {
        warnings.push("linux.resources.rdma: not managed; ignored".into());
    }
    apply_unified(dir, &r.unified)
}

/// Writes `linux.resources.unified` verbatim into files of the group dir.
pub(crate) fn apply_unified(
    dir: &Path,
    unified: &BTreeMap<String, String>,
) -> Result<(), ApplyError> {
    for (key, value) in unified {
        let field = format!("linux.resources.unified[{key:?}]");
        if key.is_empty() || key.contains('/') || key.starts_with('.') || key.contains('\0') {
            return Err(ApplyError::Invalid {
                field,
                reason: "the key must be a plain file name (no '/', no leading '.')".into(),
            });
        }
        let path = dir.join(key);
        if !path.is_file() {
            return Err(ApplyError::MissingFile { field, path });
        }
        write_field(&field, &path, value)?;
    }
    Ok(())
}

fn memory(dir: &Path, m: &Memory, warnings: &mut Vec<String>) -> Result<(), ApplyError> {
    if let Some(l) = m.limit {
        check_limit("linux.resources.memory.limit", l)?;
    }
    if let Some(r) = m.reservation {
        check_limit("linux.resources.memory.reservation", r)?;
    }
    // 0 means "not set", as in runc.
    if let Some(s) = m.swap.filter(|v| *v != 0) {
        check_limit("linux.resources.memory.swap", s)?;
        let v = swap_value(m.limit, s)?;
        // Swap first: memory.max and memory.swap.max are independent on v2.
        write_field(
            "linux.resources.memory.swap",
            &dir.join("memory.swap.max"),
            &v,
        )?;
    }
    if let Some(l) = m.limit {
        if l != 0 {
            write_field(
                "linux.resources.memory.limit",
                &dir.join("memory.max"),
                &max_or(l),
            )?;
        }
    }
    if let Some(r) = m.reservation {
        let v = if r == -1 { "max".into() } else { r.to_string() };
        write_field(
            "linux.resources.memory.reservation",
            &dir.join("memory.low"),
            &v,
        )?;
    }
    if m.swappiness.is_some() {
        warnings
            .push("linux.resources.memory.swappiness: not available on cgroup v2; ignored".into());
    }
    if m.disable_oom_killer == Some(true) {
        warnings.push(
            "linux.resources.memory.disableOOMKiller: not available on cgroup v2; ignored".into(),
        );
    }
    if m.kernel.is_some() || m.kernel_tcp.is_some() {
        warnings.push(
            "linux.resources.memory.kernel/kernelTCP: not available on cgroup v2; ignored".into(),
        );
    }
    Ok(())
}

fn cpu(dir: &Path, c: &Cpu) -> Result<(), ApplyError> {
    if let Some(s) = c.shares {
        if s != 0 {
            if !(2..=262144).contains(&s) {
                return Err(ApplyError::Invalid {
                    field: "linux.resources.cpu.shares".into(),
                    reason: format!("{s} is outside 2..=262144"),
                });
            }
            write_field(
                "linux.resources.cpu.shares",
                &dir.join("cpu.weight"),
                &shares_to_weight(s).to_string(),
            )?;
        }
    }
    let quota = c.quota.filter(|q| *q != 0);
    let period = c.period.filter(|p| *p != 0);
    if quota.is_some() || period.is_some() {
        if let Some(q) = quota {
            check_limit("linux.resources.cpu.quota", q)?;
        }
        let q = match quota {
            None | Some(-1) => "max".to_string(),
            Some(q) => q.to_string(),
        };
        let line = format!("{q} {}", period.unwrap_or(100_000));
        write_field("linux.resources.cpu.quota", &dir.join("cpu.max"), &line)?;
    }
    if let Some(b) = c.burst {
        write_field(
            "linux.resources.cpu.burst",
            &dir.join("cpu.max.burst"),
            &b.to_string(),
        )?;
    }
    if c.realtime_runtime.is_some_and(|v| v != 0) || c.realtime_period.is_some_and(|v| v != 0) {
        return Err(ApplyError::Unsupported {
            field: "linux.resources.cpu.realtimeRuntime".into(),
            reason: "cgroup v2 has no realtime CPU bandwidth control".into(),
        });
    }
    if let Some(idle) = c.idle {
        if idle != 0 && idle != 1 {
            return Err(ApplyError::Invalid {
                field: "linux.resources.cpu.idle".into(),
                reason: format!("{idle} must be 0 or 1"),
            });
        }
        write_field(
            "linux.resources.cpu.idle",
            &dir.join("cpu.idle"),
            &idle.to_string(),
        )?;
    }
    for (val, file, field) in [
        (&c.cpus, "cpuset.cpus", "linux.resources.cpu.cpus"),
        (&c.mems, "cpuset.mems", "linux.resources.cpu.mems"),
    ] {
        if let Some(v) = val {
            if !v.is_empty() {
                write_field(field, &dir.join(file), v)?;
            }
        }
    }
    Ok(())
}

fn io(dir: &Path, b: &BlockIo) -> Result<(), ApplyError> {
    const F: &str = "linux.resources.blockIO";
    if let Some(w) = b.weight.filter(|w| *w != 0) {
        let field = "linux.resources.blockIO.weight";
        check_weight(field, w)?;
        let io_weight = dir.join("io.weight");
        let bfq = dir.join("io.bfq.weight");
        if io_weight.exists() {
            write_field(
                field,
                &io_weight,
                &format!("default {}", blkio_weight_to_io(w)),
            )?;
        } else if bfq.exists() {
            write_field(field, &bfq, &w.to_string())?;
        } else {
            return Err(ApplyError::MissingFile {
                field: field.into(),
                path: io_weight,
            });
        }
    }
    if b.leaf_weight.is_some() {
        return Err(ApplyError::Unsupported {
            field: format!("{F}.leafWeight"),
            reason: "cgroup v2 has no leaf weights".into(),
        });
    }
    for (i, wd) in b.weight_device.iter().enumerate() {
        if let Some(w) = wd.weight {
            let field = format!("{F}.weightDevice[{i}].weight");
            check_weight(&field, w)?;
            let line = format!("{}:{} {}", wd.major, wd.minor, blkio_weight_to_io(w));
            write_field(&field, &dir.join("io.weight"), &line)?;
        }
        if wd.leaf_weight.is_some() {
            return Err(ApplyError::Unsupported {
                field: format!("{F}.weightDevice[{i}].leafWeight"),
                reason: "cgroup v2 has no leaf weights".into(),
            });
        }
    }
    // Gather every throttle per device into one io.max line.
    let mut per_dev: BTreeMap<(i64, i64), Vec<String>> = BTreeMap::new();
    for (list, key, name) in [
        (&b.throttle_read_bps_device, "rbps", "throttleReadBpsDevice"),
        (
            &b.throttle_write_bps_device,
            "wbps",
            "throttleWriteBpsDevice",
        ),
        (
            &b.throttle_read_iops_device,
            "riops",
            "throttleReadIOPSDevice",
        ),
        (
            &b.throttle_write_iops_device,
            "wiops",
            "throttleWriteIOPSDevice",
        ),
    ] {
        for (i, t) in list.iter().enumerate() {
            if t.major < 0 || t.minor < 0 {
                return Err(ApplyError::Invalid {
                    field: format!("{F}.{name}[{i}]"),
                    reason: format!("device {}:{} has a negative number", t.major, t.minor),
                });
            }
            per_dev
                .entry((t.major, t.minor))
                .or_default()
                .push(format!("{key}={}", t.rate));
        }
    }
    for ((maj, min), parts) in per_dev {
        let line = format!("{maj}:{min} {}", parts.join(" "));
        write_field(&format!("{F}.throttle*"), &dir.join("io.max"), &line)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions() {
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(262144), 10000);
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(blkio_weight_to_io(10), 1);
        assert_eq!(blkio_weight_to_io(1000), 10000);
        assert_eq!(blkio_weight_to_io(500), 4950);
        assert_eq!(swap_value(Some(100), 300).unwrap(), "200");
        assert_eq!(swap_value(None, -1).unwrap(), "max");
        assert!(swap_value(Some(300), 100).is_err());
        assert!(swap_value(None, 100).is_err());
        assert!(swap_value(Some(-1), 100).is_err());
    }
}
