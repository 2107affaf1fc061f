//! `docker stats`: the engine's samples (job accounting) in Docker's
//! shape, each with the previous sample of the same stream as
//! `precpu_stats`, so a client can compute a CPU percentage. The previous
//! sample belongs to the stream: two clients watching one container do
//! not see each other's.

use crate::{Docker, Result};
use bollard_stubs::models::*;
use silo_engine::StatsSample;
use std::collections::HashMap;

const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// One Docker stats sample from the engine's, and its CPU part.
pub(crate) fn convert(s: &StatsSample) -> (ContainerCpuStats, ContainerStatsResponse) {
    let j = &s.job;
    let cpu = ContainerCpuStats {
        cpu_usage: Some(ContainerCpuUsage {
            total_usage: Some(j.cpu.usage_ns),
            percpu_usage: None,
            usage_in_kernelmode: Some(j.cpu.system_ns),
            usage_in_usermode: Some(j.cpu.user_ns),
        }),
        system_cpu_usage: Some(s.system_cpu_ns),
        online_cpus: Some(s.online_cpus),
        throttling_data: Some(ContainerThrottlingData {
            throttled_periods: Some(j.cpu.throttled_periods),
            ..Default::default()
        }),
    };
    // Unlimited memory: Docker reports the host's memory.
    let limit = j.memory.limit.unwrap_or(s.host_memory);
    let blk = |op: &str, value: u64| ContainerBlkioStatEntry {
        major: Some(0),
        minor: Some(0),
        op: Some(op.into()),
        value: Some(value),
    };
    let resp = ContainerStatsResponse {
        read: Some(s.read.clone()),
        cpu_stats: Some(cpu.clone()),
        memory_stats: Some(ContainerMemoryStats {
            usage: Some(j.memory.current),
            max_usage: Some(j.memory.peak),
            limit: Some(limit),
            failcnt: Some(j.memory.oom_events),
            stats: Some(HashMap::new()),
            ..Default::default()
        }),
        pids_stats: Some(ContainerPidsStats {
            current: Some(j.pids.current),
            limit: j.pids.limit,
        }),
        blkio_stats: Some(ContainerBlkioStats {
            io_service_bytes_recursive: Some(vec![
                blk("read", j.blkio.read_bytes),
                blk("write", j.blkio.write_bytes),
            ]),
            io_serviced_recursive: Some(vec![
                blk("read", j.blkio.read_ops),
                blk("write", j.blkio.write_ops),
            ]),
            ..Default::default()
        }),
        num_procs: Some(0),
        os_type: Some("linux".into()),
        networks: Some(
            s.networks
                .iter()
                .map(|(name, n)| {
                    (
                        name.clone(),
                        ContainerNetworkStats {
                            rx_bytes: Some(n.rx_bytes),
                            rx_packets: Some(n.rx_packets),
                            rx_errors: Some(n.rx_errors),
                            rx_dropped: Some(n.rx_dropped),
                            tx_bytes: Some(n.tx_bytes),
                            tx_packets: Some(n.tx_packets),
                            tx_errors: Some(n.tx_errors),
                            tx_dropped: Some(n.tx_dropped),
                            ..Default::default()
                        },
                    )
                })
                .collect(),
        ),
        ..Default::default()
    };
    (cpu, resp)
}

/// A stream of samples of one container.
pub struct StatsStream {
    docker: Docker,
    id: String,
    name: String,
    previous: Option<(String, ContainerCpuStats)>,
}

impl Docker {
    /// Opens a stats stream (an unknown container is a 404 here).
    pub fn stats(&self, id: &str) -> Result<StatsStream> {
        let c = self.engine.container(id)?;
        Ok(StatsStream {
            docker: self.clone(),
            id: c.id,
            name: format!("/{}", c.name),
            previous: None,
        })
    }
}

impl StatsStream {
    /// The next sample; a container that does not run gives an empty one.
    pub fn sample(&mut self) -> Result<ContainerStatsResponse> {
        let Some(s) = self.docker.engine.stats(&self.id)? else {
            return Ok(ContainerStatsResponse {
                id: Some(self.id.clone()),
                name: Some(self.name.clone()),
                read: Some(silo_units::now_rfc3339()),
                preread: Some(ZERO_TIME.into()),
                os_type: Some("linux".into()),
                ..Default::default()
            });
        };
        let (cpu, mut resp) = convert(&s);
        resp.id = Some(self.id.clone());
        resp.name = Some(self.name.clone());
        let (preread, precpu) = match self.previous.replace((s.read.clone(), cpu)) {
            Some((t, c)) => (t, c),
            None => (ZERO_TIME.to_string(), ContainerCpuStats::default()),
        };
        resp.preread = Some(preread);
        resp.precpu_stats = Some(precpu);
        Ok(resp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> StatsSample {
        let mut j = silo_job::Stats::default();
        j.cpu.usage_ns = 5_000_000;
        j.cpu.user_ns = 3_000_000;
        j.cpu.system_ns = 2_000_000;
        j.memory.current = 4096;
        j.memory.peak = 8192;
        j.memory.limit = Some(16 << 20);
        j.memory.oom_events = 1;
        j.pids.current = 3;
        j.pids.limit = Some(100);
        j.blkio.read_bytes = 10;
        j.blkio.write_bytes = 20;
        StatsSample {
            read: "now".into(),
            job: j,
            system_cpu_ns: 1_000_000_000,
            online_cpus: 2,
            host_memory: 1 << 34,
            networks: vec![(
                "eth0".into(),
                silo_engine::InterfaceCounters {
                    rx_bytes: 7,
                    tx_packets: 3,
                    ..Default::default()
                },
            )],
        }
    }

    #[test]
    fn converts_job_stats() {
        let (cpu, r) = convert(&sample());
        let u = r.cpu_stats.as_ref().unwrap().cpu_usage.as_ref().unwrap();
        assert_eq!(u.total_usage, Some(5_000_000));
        assert_eq!(u.usage_in_kernelmode, Some(2_000_000));
        assert_eq!(u.usage_in_usermode, Some(3_000_000));
        assert_eq!(cpu.system_cpu_usage, Some(1_000_000_000));
        assert_eq!(cpu.online_cpus, Some(2));
        let eth0 = &r.networks.as_ref().unwrap()["eth0"];
        assert_eq!((eth0.rx_bytes, eth0.tx_packets), (Some(7), Some(3)));
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
        assert_eq!(
            (b[0].op.as_deref(), b[0].value, b[1].value),
            (Some("read"), Some(10), Some(20))
        );
        let j = serde_json::to_value(&r).unwrap();
        assert_eq!(j["cpu_stats"]["cpu_usage"]["total_usage"], 5_000_000);
        let mut s = sample();
        s.job.memory.limit = None;
        assert_eq!(
            convert(&s).1.memory_stats.unwrap().limit,
            Some(1 << 34),
            "unlimited: the host's memory"
        );
    }
}
