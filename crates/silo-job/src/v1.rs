//! Writing OCI resources into cgroup v1 controller files (also used for the controllers of hybrid hosts).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use silo_oci::{BlockIo, Cpu, Memory, Resources};

use crate::{read_trimmed, write_field, ApplyError};

/// `-1` means "unlimited"; anything else below zero is an error naming the field.
pub(crate) fn check_limit(field: &str, v: i64) -> Result<(), ApplyError> {
    if v < -1 {
        return Err(ApplyError::Invalid {
            field: field.into(),
            reason: format!("{v} is negative (only -1, meaning unlimited, is allowed)"),
        });
    }
    Ok(())
}

pub(crate) fn check_page_size(field: &str, size: &str) -> Result<(), ApplyError> {
    let digits = size.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = &size[digits.len()..];
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ApplyError::Invalid {
            field: field.into(),
            reason: format!("page size {size:?} is not a number followed by KB, MB or GB"),
        });
    }
    if !["KB", "MB", "GB"].contains(&unit) {
        return Err(ApplyError::Invalid {
            field: field.into(),
            reason: format!("page size {size:?} must end in KB, MB or GB"),
        });
    }
    Ok(())
}

/// `pids.max` for an OCI pids limit (zero or negative means no limit);
/// the same file and format on v1 and v2.
pub(crate) fn pids_max(limit: i64) -> String {
    if limit <= 0 {
        "max".to_string()
    } else {
        limit.to_string()
    }
}

pub(crate) fn check_weight(field: &str, w: u16) -> Result<(), ApplyError> {
    if !(10..=1000).contains(&w) {
        return Err(ApplyError::Invalid {
            field: field.into(),
            reason: format!("{w} is outside 10..=1000"),
        });
    }
    Ok(())
}

/// The group dir for `controller`, or an error naming the field that needed it.
fn need<'a>(
    dirs: &'a BTreeMap<String, PathBuf>,
    controller: &str,
    field: &str,
) -> Result<&'a Path, ApplyError> {
    dirs.get(controller)
        .map(PathBuf::as_path)
        .ok_or_else(|| ApplyError::Unsupported {
            field: field.into(),
            reason: format!("the {controller} controller is not mounted"),
        })
}

pub(crate) fn apply(
    dirs: &BTreeMap<String, PathBuf>,
    r: &Resources,
    warnings: &mut Vec<String>,
) -> Result<(), ApplyError> {
    if let Some(m) = &r.memory {
        memory(dirs, m, warnings)?;
    }
    if let Some(c) = &r.cpu {
        cpu(dirs, c)?;
    }
    if let Some(p) = &r.pids {
        let dir = need(dirs, "pids", "linux.resources.pids.limit")?;
        write_field(
            "linux.resources.pids.limit",
            &dir.join("pids.max"),
            &pids_max(p.limit),
        )?;
    }
    if let Some(b) = &r.block_io {
        blkio(dirs, b)?;
    }
    for (i, h) in r.hugepage_limits.iter().enumerate() {
        let field = format!("linux.resources.hugepageLimits[{i}]");
        check_page_size(&field, &h.page_size)?;
        let dir = need(dirs, "hugetlb", &field)?;
        let file = dir.join(format!("hugetlb.{}.limit_in_bytes", h.page_size));
        write_field(&field, &file, &h.limit.to_string())?;
    }
    if r.network.is_some() {
        warnings.push("linux.resources.network: net_cls/net_prio are not managed; ignored".into());
    }
    if r.rdma.is_some() {
        warnings.push("linux.resources.rdma: not managed; ignored".into());
    }
    Ok(())
}

fn memory(
    dirs: &BTreeMap<String, PathBuf>,
    m: &Memory,
    warnings: &mut Vec<String>,
) -> Result<(), ApplyError> {
    const F: &str = "linux.resources.memory";
    // 0 means "not set" for the limits, as in runc.
    let limit = m.limit.filter(|v| *v != 0);
    let swap = m.swap.filter(|v| *v != 0);
    let any = limit.is_some()
        || m.reservation.is_some()
        || swap.is_some()
        || m.swappiness.is_some()
        || m.disable_oom_killer == Some(true);
    if !any {
        return Ok(());
    }
    let dir = need(dirs, "memory", F)?;
    if let Some(l) = limit {
        check_limit("linux.resources.memory.limit", l)?;
    }
    if let Some(s) = swap {
        check_limit("linux.resources.memory.swap", s)?;
        if let Some(l) = limit {
            if s != -1 && (l == -1 || s < l) {
                return Err(ApplyError::Invalid {
                    field: "linux.resources.memory.swap".into(),
                    reason: format!(
                        "memory+swap {s} must be at least the memory limit {l} (and unlimited if it is)"
                    ),
                });
            }
        }
    }
    if let Some(r) = m.reservation {
        check_limit("linux.resources.memory.reservation", r)?;
    }
    let limit_file = dir.join("memory.limit_in_bytes");
    let memsw_file = dir.join("memory.memsw.limit_in_bytes");
    match (limit, swap) {
        (limit, Some(swap)) => {
            // The kernel insists memsw >= limit at every moment, so raise memsw first when
            // growing and lower the limit first when shrinking.
            let current_memsw = read_trimmed(&memsw_file)
                .ok()
                .and_then(|s| s.parse::<u64>().ok())
                .unwrap_or(u64::MAX);
            let growing = swap == -1 || (swap as u64) > current_memsw;
            let write_limit = || match limit {
                Some(l) => write_field("linux.resources.memory.limit", &limit_file, &l.to_string()),
                None => Ok(()),
            };
            let write_swap = || {
                write_field(
                    "linux.resources.memory.swap",
                    &memsw_file,
                    &swap.to_string(),
                )
            };
            if growing {
                write_swap()?;
                write_limit()?;
            } else {
                write_limit()?;
                write_swap()?;
            }
        }
        (Some(l), None) => {
            write_field("linux.resources.memory.limit", &limit_file, &l.to_string())?;
        }
        (None, None) => {}
    }
    if let Some(r) = m.reservation {
        write_field(
            "linux.resources.memory.reservation",
            &dir.join("memory.soft_limit_in_bytes"),
            &r.to_string(),
        )?;
    }
    if let Some(s) = m.swappiness {
        if s > 100 {
            return Err(ApplyError::Invalid {
                field: "linux.resources.memory.swappiness".into(),
                reason: format!("{s} is above 100"),
            });
        }
        write_field(
            "linux.resources.memory.swappiness",
            &dir.join("memory.swappiness"),
            &s.to_string(),
        )?;
    }
    if m.disable_oom_killer == Some(true) {
        write_field(
            "linux.resources.memory.disableOOMKiller",
            &dir.join("memory.oom_control"),
            "1",
        )?;
    }
    if m.kernel.is_some() || m.kernel_tcp.is_some() {
        warnings.push(
            "linux.resources.memory.kernel/kernelTCP: kernel memory limits are deprecated; ignored"
                .into(),
        );
    }
    Ok(())
}

fn cpu(dirs: &BTreeMap<String, PathBuf>, c: &Cpu) -> Result<(), ApplyError> {
    let cpu_dir = || need(dirs, "cpu", "linux.resources.cpu");
    if let Some(s) = c.shares {
        if s != 0 {
            write_field(
                "linux.resources.cpu.shares",
                &cpu_dir()?.join("cpu.shares"),
                &s.to_string(),
            )?;
        }
    }
    if let Some(p) = c.period {
        if p != 0 {
            write_field(
                "linux.resources.cpu.period",
                &cpu_dir()?.join("cpu.cfs_period_us"),
                &p.to_string(),
            )?;
        }
    }
    if let Some(q) = c.quota {
        if q != 0 {
            check_limit("linux.resources.cpu.quota", q)?;
            write_field(
                "linux.resources.cpu.quota",
                &cpu_dir()?.join("cpu.cfs_quota_us"),
                &q.to_string(),
            )?;
        }
    }
    if let Some(b) = c.burst {
        write_field(
            "linux.resources.cpu.burst",
            &cpu_dir()?.join("cpu.cfs_burst_us"),
            &b.to_string(),
        )?;
    }
    if let Some(p) = c.realtime_period {
        if p != 0 {
            write_field(
                "linux.resources.cpu.realtimePeriod",
                &cpu_dir()?.join("cpu.rt_period_us"),
                &p.to_string(),
            )?;
        }
    }
    if let Some(rt) = c.realtime_runtime {
        if rt != 0 {
            check_limit("linux.resources.cpu.realtimeRuntime", rt)?;
            write_field(
                "linux.resources.cpu.realtimeRuntime",
                &cpu_dir()?.join("cpu.rt_runtime_us"),
                &rt.to_string(),
            )?;
        }
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
            &cpu_dir()?.join("cpu.idle"),
            &idle.to_string(),
        )?;
    }
    for (val, file, field) in [
        (&c.cpus, "cpuset.cpus", "linux.resources.cpu.cpus"),
        (&c.mems, "cpuset.mems", "linux.resources.cpu.mems"),
    ] {
        if let Some(v) = val {
            if !v.is_empty() {
                let dir = need(dirs, "cpuset", field)?;
                write_field(field, &dir.join(file), v)?;
            }
        }
    }
    Ok(())
}

fn blkio(dirs: &BTreeMap<String, PathBuf>, b: &BlockIo) -> Result<(), ApplyError> {
    const F: &str = "linux.resources.blockIO";
    let dir = || need(dirs, "blkio", F);
    if let Some(w) = b.weight.filter(|w| *w != 0) {
        let field = "linux.resources.blockIO.weight";
        check_weight(field, w)?;
        let d = dir()?;
        let file = ["blkio.weight", "blkio.bfq.weight"]
            .iter()
            .map(|f| d.join(f))
            .find(|p| p.exists())
            .ok_or_else(|| ApplyError::MissingFile {
                field: field.into(),
                path: d.join("blkio.weight"),
            })?;
        write_field(field, &file, &w.to_string())?;
    }
    if let Some(w) = b.leaf_weight.filter(|w| *w != 0) {
        let field = "linux.resources.blockIO.leafWeight";
        check_weight(field, w)?;
        write_field(field, &dir()?.join("blkio.leaf_weight"), &w.to_string())?;
    }
    for (i, wd) in b.weight_device.iter().enumerate() {
        if let Some(w) = wd.weight {
            let field = format!("{F}.weightDevice[{i}].weight");
            check_weight(&field, w)?;
            let line = format!("{}:{} {}", wd.major, wd.minor, w);
            write_field(&field, &dir()?.join("blkio.weight_device"), &line)?;
        }
        if let Some(w) = wd.leaf_weight {
            let field = format!("{F}.weightDevice[{i}].leafWeight");
            check_weight(&field, w)?;
            let line = format!("{}:{} {}", wd.major, wd.minor, w);
            write_field(&field, &dir()?.join("blkio.leaf_weight_device"), &line)?;
        }
    }
    for (list, name, file) in [
        (
            &b.throttle_read_bps_device,
            "throttleReadBpsDevice",
            "blkio.throttle.read_bps_device",
        ),
        (
            &b.throttle_write_bps_device,
            "throttleWriteBpsDevice",
            "blkio.throttle.write_bps_device",
        ),
        (
            &b.throttle_read_iops_device,
            "throttleReadIOPSDevice",
            "blkio.throttle.read_iops_device",
        ),
        (
            &b.throttle_write_iops_device,
            "throttleWriteIOPSDevice",
            "blkio.throttle.write_iops_device",
        ),
    ] {
        for (i, t) in list.iter().enumerate() {
            let field = format!("{F}.{name}[{i}]");
            if t.major < 0 || t.minor < 0 {
                return Err(ApplyError::Invalid {
                    field,
                    reason: format!("device {}:{} has a negative number", t.major, t.minor),
                });
            }
            let line = format!("{}:{} {}", t.major, t.minor, t.rate);
            write_field(&field, &dir()?.join(file), &line)?;
        }
    }
    Ok(())
}
