//! `runtime.v1.RuntimeService`: pod sandboxes are the engine's pods,
//! containers its containers (marked with the `cri` extension, which keeps
//! what the kubelet said that the engine has no word for). Every call runs
//! the engine on a blocking thread.

use crate::proto as cri;
use crate::proto::runtime_service_server::RuntimeService;
use crate::translate::{self, ContainerRecord, PodRecord};
use crate::{blocking, status, Cri, EXTENSION};
use silo_engine::{Container, Engine, Pod, PodStatus, Status as CStatus};
use std::collections::HashMap;
use tonic::{Request, Response, Status};

type R<T> = Result<Response<T>, Status>;

/// RFC 3339 as nanoseconds since the epoch (0 when empty or unreadable).
fn nanos(t: &str) -> i64 {
    silo_units::parse_rfc3339(t).map_or(0, |(s, n)| s * 1_000_000_000 + i64::from(n))
}

fn now_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

fn map(m: &std::collections::BTreeMap<String, String>) -> HashMap<String, String> {
    m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

pub(crate) fn pod_record(p: &Pod) -> Option<PodRecord> {
    let raw = p.extensions.get(EXTENSION)?;
    serde_json::from_str(raw.get()).ok()
}

pub(crate) fn container_record(c: &Container) -> Option<ContainerRecord> {
    c.extension(EXTENSION)
}

fn extension<T: serde::Serialize>(v: &T) -> Result<silo_engine::Extensions, Status> {
    let raw = serde_json::value::to_raw_value(v).map_err(|e| Status::internal(e.to_string()))?;
    Ok([(EXTENSION.to_string(), raw)].into_iter().collect())
}

fn pod_metadata(r: &PodRecord) -> cri::PodSandboxMetadata {
    cri::PodSandboxMetadata {
        name: r.name.clone(),
        uid: r.uid.clone(),
        namespace: r.namespace.clone(),
        attempt: r.attempt,
    }
}

fn pod_state(p: &Pod) -> i32 {
    match p.status {
        PodStatus::Ready => cri::PodSandboxState::SandboxReady as i32,
        PodStatus::NotReady => cri::PodSandboxState::SandboxNotready as i32,
    }
}

fn container_state(c: &Container) -> i32 {
    use cri::ContainerState as S;
    match &c.state.status {
        // A start that failed ended the container's life, as for containerd:
        // CREATED would make the kubelet start it again whatever the
        // pod's restart policy.
        CStatus::Created if !c.state.error.is_empty() => S::ContainerExited as i32,
        CStatus::Created | CStatus::Creating => S::ContainerCreated as i32,
        CStatus::Running(_) | CStatus::Paused(_) => S::ContainerRunning as i32,
        CStatus::Exited(_) | CStatus::Restarting(_) | CStatus::Dead | CStatus::Removing => {
            S::ContainerExited as i32
        }
    }
}

fn image_spec(name: &str) -> cri::ImageSpec {
    cri::ImageSpec {
        image: name.to_string(),
        ..Default::default()
    }
}

/// A CRI container's id as the kubelet knows it (the engine's id).
fn cri_containers(engine: &Engine) -> Vec<(Container, ContainerRecord)> {
    engine
        .containers()
        .into_iter()
        .filter_map(|c| container_record(&c).map(|r| (c, r)))
        .collect()
}

fn cri_container(engine: &Engine, id: &str) -> Result<(Container, ContainerRecord), Status> {
    let c = engine.container(id).map_err(status)?;
    let r = container_record(&c)
        .ok_or_else(|| Status::not_found(format!("container {id} was not made by the CRI")))?;
    Ok((c, r))
}

fn cri_pod(engine: &Engine, id: &str) -> Result<(Pod, PodRecord), Status> {
    if id.is_empty() {
        return Err(Status::invalid_argument("pod_sandbox_id is empty"));
    }
    let p = engine.pod(id).map_err(status)?;
    let r = pod_record(&p)
        .ok_or_else(|| Status::not_found(format!("pod {id} was not made by the CRI")))?;
    Ok((p, r))
}

/// The CRI's pods, with their records.
fn cri_pods(engine: &Engine) -> Vec<(Pod, PodRecord)> {
    engine
        .pods()
        .into_iter()
        .filter_map(|p| pod_record(&p).map(|r| (p, r)))
        .collect()
}

/// The selection the container list calls share: an id prefix, a pod id
/// prefix and labels (each empty: any).
fn selects(id: &str, pod: &str, labels: &HashMap<String, String>, c: &Container) -> bool {
    c.id.starts_with(id)
        && (pod.is_empty() || c.config.pod.as_deref().is_some_and(|p| p.starts_with(pod)))
        && labels_match(&c.config.labels, labels)
}

/// The selection the pod list calls share: an id prefix and labels.
fn pod_selected(id: &str, labels: &HashMap<String, String>, p: &Pod) -> bool {
    p.id.starts_with(id) && labels_match(&p.config.labels, labels)
}

fn labels_match(
    labels: &std::collections::BTreeMap<String, String>,
    selector: &HashMap<String, String>,
) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

fn to_container(c: &Container, r: &ContainerRecord) -> cri::Container {
    cri::Container {
        id: c.id.clone(),
        pod_sandbox_id: c.config.pod.clone().unwrap_or_default(),
        metadata: Some(cri::ContainerMetadata {
            name: r.name.clone(),
            attempt: r.attempt,
        }),
        image: Some(image_spec(&r.image)),
        image_ref: c.config.image.id.clone(),
        image_id: c.config.image.id.clone(),
        state: container_state(c),
        created_at: nanos(&c.created),
        labels: map(&c.config.labels),
        annotations: map(&r.annotations),
    }
}

fn to_sandbox(p: &Pod, r: &PodRecord) -> cri::PodSandbox {
    cri::PodSandbox {
        id: p.id.clone(),
        metadata: Some(pod_metadata(r)),
        state: pod_state(p),
        created_at: nanos(&p.created),
        labels: map(&p.config.labels),
        annotations: map(&r.annotations),
        runtime_handler: r.runtime_handler.clone(),
    }
}

/// The container's status as the CRI reports it (reason OOMKilled,
/// Completed or Error for an exited one, as containerd does).
fn container_status(c: &Container, r: &ContainerRecord) -> cri::ContainerStatus {
    let (mut started, mut finished, mut code) = (0, 0, 0);
    let (mut reason, mut message) = (String::new(), String::new());
    match &c.state.status {
        CStatus::Running(run) | CStatus::Paused(run) => started = nanos(&run.started_at),
        _ => {
            if let Some(e) = c.state.last_exit() {
                started = nanos(&e.started_at);
                finished = nanos(&e.finished_at);
                code = i32::try_from(e.code).unwrap_or(255);
                reason = if e.oom_killed {
                    "OOMKilled"
                } else if e.code == 0 {
                    "Completed"
                } else {
                    "Error"
                }
                .into();
            }
            if !c.state.error.is_empty() {
                reason = "StartError".into();
                message = c.state.error.clone();
                code = match c.state.error_code {
                    0 => 128,
                    n => i32::try_from(n).unwrap_or(128),
                };
                if finished == 0 {
                    finished = now_nanos();
                }
            }
        }
    }
    cri::ContainerStatus {
        id: c.id.clone(),
        metadata: Some(cri::ContainerMetadata {
            name: r.name.clone(),
            attempt: r.attempt,
        }),
        state: container_state(c),
        created_at: nanos(&c.created),
        started_at: started,
        finished_at: finished,
        exit_code: code,
        image: Some(image_spec(&r.image)),
        image_ref: c.config.image.id.clone(),
        image_id: c.config.image.id.clone(),
        reason,
        message,
        labels: map(&c.config.labels),
        annotations: map(&r.annotations),
        mounts: r
            .mounts
            .iter()
            .map(|(host, inside, ro, prop)| cri::Mount {
                host_path: host.clone(),
                container_path: inside.clone(),
                readonly: *ro,
                propagation: *prop,
                ..Default::default()
            })
            .collect(),
        log_path: r.log_path.clone(),
        resources: Some(cri::ContainerResources {
            linux: Some(linux_resources(&c.config.resources)),
            windows: None,
        }),
        user: None,
    }
}

fn linux_resources(r: &silo_oci::Resources) -> cri::LinuxContainerResources {
    let cpu = r.cpu.clone().unwrap_or_default();
    let mem = r.memory.clone().unwrap_or_default();
    cri::LinuxContainerResources {
        cpu_period: cpu.period.unwrap_or(0) as i64,
        cpu_quota: cpu.quota.unwrap_or(0),
        cpu_shares: cpu.shares.unwrap_or(0) as i64,
        memory_limit_in_bytes: mem.limit.unwrap_or(0),
        memory_swap_limit_in_bytes: mem.swap.unwrap_or(0),
        cpuset_cpus: cpu.cpus.unwrap_or_default(),
        cpuset_mems: cpu.mems.unwrap_or_default(),
        ..Default::default()
    }
}

/// A pod sandbox's status: its state, IP (from CNI or silo's network) and
/// namespace modes.
fn sandbox_status(
    engine: &Engine,
    cni: Option<&crate::cni::CniConfig>,
    p: &Pod,
    r: &PodRecord,
) -> cri::PodSandboxStatus {
    let ip = if p.status != PodStatus::Ready {
        String::new()
    } else if let (true, Some(c)) = (r.cni, cni) {
        c.ip(&p.id).unwrap_or_default()
    } else {
        engine
            .endpoints_of(&p.id)
            .first()
            .map(|(_, ep)| ep.ip.to_string())
            .unwrap_or_default()
    };
    let node = |host: bool, own: i32| if host { 2 } else { own };
    let ns = cri::NamespaceOption {
        network: node(p.config.network == silo_engine::NetworkMode::Host, 0),
        pid: node(r.host_pid, if r.shared_pid { 0 } else { 1 }),
        ipc: node(p.config.host_ipc, 0),
        ..Default::default()
    };
    cri::PodSandboxStatus {
        id: p.id.clone(),
        metadata: Some(pod_metadata(r)),
        state: pod_state(p),
        created_at: nanos(&p.created),
        network: Some(cri::PodSandboxNetworkStatus {
            ip,
            additional_ips: vec![],
        }),
        linux: Some(cri::LinuxPodSandboxStatus {
            namespaces: Some(cri::Namespace { options: Some(ns) }),
        }),
        labels: map(&p.config.labels),
        annotations: map(&r.annotations),
        runtime_handler: r.runtime_handler.clone(),
    }
}

/// The engine's events about CRI pods and containers as the CRI's
/// container events (the kubelet's evented PLEG): a pod's creation is its
/// sandbox created and started, its stop stopped, its removal deleted.
fn container_event(
    engine: &Engine,
    cni: Option<&crate::cni::CniConfig>,
    e: &silo_engine::Event,
    pods_of: &mut HashMap<String, String>,
) -> Option<Vec<cri::ContainerEventResponse>> {
    use cri::ContainerEventType as T;
    use silo_engine::{Action, Scope};
    let kinds: Vec<T> = match (&e.scope, &e.action) {
        (Scope::Container, Action::Create) => vec![T::ContainerCreatedEvent],
        (Scope::Container, Action::Start) => vec![T::ContainerStartedEvent],
        (Scope::Container, Action::Die { .. }) => vec![T::ContainerStoppedEvent],
        (Scope::Container, Action::Destroy) => vec![T::ContainerDeletedEvent],
        (Scope::Pod, Action::Create) => vec![T::ContainerCreatedEvent, T::ContainerStartedEvent],
        (Scope::Pod, Action::Stop) => vec![T::ContainerStoppedEvent],
        (Scope::Pod, Action::Destroy) => vec![T::ContainerDeletedEvent],
        _ => return None,
    };
    let pod_id = match e.scope {
        Scope::Pod => e.id.clone(),
        _ => match engine.container(&e.id) {
            Ok(c) => {
                container_record(&c)?;
                let p = c.config.pod.clone()?;
                pods_of.insert(c.id.clone(), p.clone());
                p
            }
            // Gone (deleted): known if it was seen before.
            Err(_) => pods_of.remove(&e.id)?,
        },
    };
    let pod = engine
        .pod(&pod_id)
        .ok()
        .and_then(|p| pod_record(&p).map(|r| (p, r)));
    if e.scope == Scope::Pod && pod.is_none() && e.action != Action::Destroy {
        return None;
    }
    let statuses: Vec<cri::ContainerStatus> = cri_containers(engine)
        .iter()
        .filter(|(c, _)| c.config.pod.as_deref() == Some(pod_id.as_str()))
        .map(|(c, r)| container_status(c, r))
        .collect();
    let sandbox = pod.as_ref().map(|(p, r)| sandbox_status(engine, cni, p, r));
    Some(
        kinds
            .into_iter()
            .map(|k| cri::ContainerEventResponse {
                container_id: e.id.clone(),
                container_event_type: k as i32,
                created_at: e.time_nano,
                pod_sandbox_status: sandbox.clone(),
                containers_statuses: statuses.clone(),
            })
            .collect(),
    )
}

fn container_stats(engine: &Engine, c: &Container, r: &ContainerRecord) -> cri::ContainerStats {
    let sample = engine.stats(&c.id).ok().flatten();
    stats_of(engine, c, r, sample.as_ref())
}

/// A container's stats from an engine sample (None: not running).
fn stats_of(
    engine: &Engine,
    c: &Container,
    r: &ContainerRecord,
    sample: Option<&silo_engine::StatsSample>,
) -> cri::ContainerStats {
    let ts = now_nanos();
    let u = |v: u64| Some(cri::UInt64Value { value: v });
    let (cpu, memory) = match sample {
        Some(s) => (
            Some(cri::CpuUsage {
                timestamp: ts,
                usage_core_nano_seconds: u(s.job.cpu.usage_ns),
                usage_nano_cores: None,
            }),
            Some(cri::MemoryUsage {
                timestamp: ts,
                working_set_bytes: u(s.job.memory.current),
                usage_bytes: u(s.job.memory.current),
                available_bytes: s.job.memory.limit.map(|l| cri::UInt64Value {
                    value: l.saturating_sub(s.job.memory.current),
                }),
                ..Default::default()
            }),
        ),
        None => (None, None),
    };
    cri::ContainerStats {
        attributes: Some(cri::ContainerAttributes {
            id: c.id.clone(),
            metadata: Some(cri::ContainerMetadata {
                name: r.name.clone(),
                attempt: r.attempt,
            }),
            labels: map(&c.config.labels),
            annotations: map(&r.annotations),
        }),
        cpu,
        memory,
        writable_layer: Some(cri::FilesystemUsage {
            timestamp: ts,
            fs_id: Some(cri::FilesystemIdentifier {
                mountpoint: engine.config().data_root.to_string_lossy().into_owned(),
            }),
            used_bytes: u(engine.storage().snapshot_size(&c.id)),
            inodes_used: None,
        }),
        swap: None,
    }
}

fn sandbox_stats(engine: &Engine, p: &Pod, r: &PodRecord) -> cri::PodSandboxStats {
    let members: Vec<_> = cri_containers(engine)
        .into_iter()
        .filter(|(c, _)| c.config.pod.as_deref() == Some(p.id.as_str()))
        .collect();
    let samples: Vec<_> = members
        .iter()
        .map(|(c, _)| engine.stats(&c.id).ok().flatten())
        .collect();
    let stats: Vec<cri::ContainerStats> = members
        .iter()
        .zip(&samples)
        .map(|((c, cr), s)| stats_of(engine, c, cr, s.as_ref()))
        .collect();
    let ts = now_nanos();
    let u = |v: u64| Some(cri::UInt64Value { value: v });
    // The pod's interfaces, as any of its running containers sees them
    // (they share its network namespace).
    let network = samples.iter().flatten().next().map(|s| {
        let iface =
            |(name, n): &(String, silo_engine::InterfaceCounters)| cri::NetworkInterfaceUsage {
                name: name.clone(),
                rx_bytes: u(n.rx_bytes),
                rx_errors: u(n.rx_errors),
                tx_bytes: u(n.tx_bytes),
                tx_errors: u(n.tx_errors),
            };
        let all: Vec<_> = s.networks.iter().map(iface).collect();
        cri::NetworkUsage {
            timestamp: ts,
            default_interface: all
                .iter()
                .find(|i| i.name == "eth0")
                .or(all.first())
                .cloned(),
            interfaces: all,
        }
    });
    let process = cri::ProcessUsage {
        timestamp: ts,
        process_count: u(samples.iter().flatten().map(|s| s.job.pids.current).sum()),
    };
    let sum = |f: &dyn Fn(&cri::ContainerStats) -> Option<u64>| -> u64 {
        stats.iter().filter_map(f).sum()
    };
    let cpu_ns = sum(&|s| {
        s.cpu
            .as_ref()?
            .usage_core_nano_seconds
            .as_ref()
            .map(|v| v.value)
    });
    let mem = sum(&|s| {
        s.memory
            .as_ref()?
            .working_set_bytes
            .as_ref()
            .map(|v| v.value)
    });
    cri::PodSandboxStats {
        attributes: Some(cri::PodSandboxAttributes {
            id: p.id.clone(),
            metadata: Some(pod_metadata(r)),
            labels: map(&p.config.labels),
            annotations: map(&r.annotations),
        }),
        linux: Some(cri::LinuxPodSandboxStats {
            cpu: Some(cri::CpuUsage {
                timestamp: ts,
                usage_core_nano_seconds: Some(cri::UInt64Value { value: cpu_ns }),
                usage_nano_cores: None,
            }),
            memory: Some(cri::MemoryUsage {
                timestamp: ts,
                working_set_bytes: Some(cri::UInt64Value { value: mem }),
                usage_bytes: Some(cri::UInt64Value { value: mem }),
                ..Default::default()
            }),
            network,
            process: Some(process),
            containers: stats,
        }),
        windows: None,
    }
}

#[tonic::async_trait]
impl RuntimeService for Cri {
    async fn version(&self, _: Request<cri::VersionRequest>) -> R<cri::VersionResponse> {
        Ok(Response::new(cri::VersionResponse {
            version: "0.1.0".into(),
            runtime_name: "silo".into(),
            runtime_version: env!("CARGO_PKG_VERSION").into(),
            runtime_api_version: "v1".into(),
        }))
    }

    async fn run_pod_sandbox(
        &self,
        req: Request<cri::RunPodSandboxRequest>,
    ) -> R<cri::RunPodSandboxResponse> {
        let req = req.into_inner();
        let config = req
            .config
            .ok_or_else(|| Status::invalid_argument("config is missing"))?;
        if !req.runtime_handler.is_empty() && req.runtime_handler != "silo" {
            return Err(Status::not_found(format!(
                "runtime handler {:?} is not configured (silo has one handler, \"\" or \"silo\")",
                req.runtime_handler
            )));
        }
        let (mut pod, mut record) = translate::pod_config(&config).map_err(refused)?;
        record.runtime_handler = req.runtime_handler;
        let cni = self.cni.clone();
        let engine = self.engine.clone();
        let pause_image = self.pause_image.clone();
        let creating = self.creating.clone();
        blocking(move || {
            let list = match &cni {
                Some(c) => c
                    .load()
                    .map_err(|e| Status::failed_precondition(e.to_string()))?,
                None => None,
            };
            if list.is_some() && pod.network == silo_engine::NetworkMode::Default {
                // The plugins make the pod's interface and publish its ports.
                pod.network = silo_engine::NetworkMode::None;
                pod.ports.clear();
                record.cni = true;
            }
            // One RunPodSandbox per pod at a time.
            let _making = Making::take(&creating, &pod.name).ok_or_else(|| {
                Status::unavailable(format!("pod {} is being created; retry", pod.name))
            })?;
            // A retry of an attempt whose pod is complete answers with it;
            // one left half-made (a crash, a failed cleanup) is made again.
            if let Ok(p) = engine.pod(&pod.name) {
                if pod_complete(&engine, cni.as_deref(), &p) {
                    return Ok(p.id);
                }
                if let Some(r) = pod_record(&p) {
                    cni_del(cni.as_deref(), &engine, &p, &r)?;
                }
                engine.remove_pod(&p.id).map_err(status)?;
            }
            let ext = extension(&record)?;
            let p = engine.create_pod(pod, ext).map_err(status)?;
            let undo = |why: &str| {
                if let Err(r) = engine.remove_pod(&p.id) {
                    tracing::warn!(pod = %p.id, "removing the pod after {why}: {r}");
                }
            };
            if record.shared_pid {
                if let Err(e) = start_pause(&engine, &p, &pause_image) {
                    undo("its pause container failed");
                    return Err(e);
                }
            }
            if let (Some(cni), Some(list), true) = (&cni, &list, record.cni) {
                let netns = engine.pod_netns(&p.id);
                if let Err(e) = cni.add(list, &pod_info(&p, &record, &netns)) {
                    undo("a CNI failure");
                    return Err(Status::internal(e.to_string()));
                }
            }
            Ok(p.id)
        })
        .await
        .map(|id| Response::new(cri::RunPodSandboxResponse { pod_sandbox_id: id }))
    }

    async fn stop_pod_sandbox(
        &self,
        req: Request<cri::StopPodSandboxRequest>,
    ) -> R<cri::StopPodSandboxResponse> {
        let id = req.into_inner().pod_sandbox_id;
        let engine = self.engine.clone();
        let cni = self.cni.clone();
        blocking(move || {
            let (p, r) = match cri_pod(&engine, &id) {
                Ok(v) => v,
                // Stop is idempotent: an unknown pod is stopped.
                Err(e) if e.code() == tonic::Code::NotFound => return Ok(()),
                Err(e) => return Err(e),
            };
            // Its processes first (the kubelet already gave them their
            // grace period), then its network, then its namespaces: a
            // failed CNI DEL leaves a stopped, still ready pod to retry.
            for c in engine.containers() {
                if c.config.pod.as_deref() == Some(p.id.as_str()) && c.state.status.is_running() {
                    engine.stop(&c.id, None, Some(0)).map_err(status)?;
                }
            }
            cni_del(cni.as_deref(), &engine, &p, &r)?;
            engine.stop_pod(&p.id, Some(0)).map_err(status)
        })
        .await?;
        Ok(Response::new(cri::StopPodSandboxResponse {}))
    }

    async fn remove_pod_sandbox(
        &self,
        req: Request<cri::RemovePodSandboxRequest>,
    ) -> R<cri::RemovePodSandboxResponse> {
        let id = req.into_inner().pod_sandbox_id;
        let engine = self.engine.clone();
        let cni = self.cni.clone();
        blocking(move || {
            let (p, r) = match cri_pod(&engine, &id) {
                Ok(v) => v,
                Err(e) if e.code() == tonic::Code::NotFound => return Ok(()),
                Err(e) => return Err(e),
            };
            cni_del(cni.as_deref(), &engine, &p, &r)?;
            engine.remove_pod(&p.id).map_err(status)
        })
        .await?;
        Ok(Response::new(cri::RemovePodSandboxResponse {}))
    }

    async fn pod_sandbox_status(
        &self,
        req: Request<cri::PodSandboxStatusRequest>,
    ) -> R<cri::PodSandboxStatusResponse> {
        let req = req.into_inner();
        let engine = self.engine.clone();
        let cni = self.cni.clone();
        blocking(move || {
            let (p, r) = cri_pod(&engine, &req.pod_sandbox_id)?;
            let mut info = HashMap::new();
            if req.verbose {
                let v = serde_json::json!({
                    "pod": p.id,
                    "name": p.name,
                    "hostname": p.hostname(),
                    "record": r,
                    "endpoints": engine.endpoints_of(&p.id).iter().map(|(n, ep)| serde_json::json!({
                        "network": n.name, "endpoint": ep.id, "ip": ep.ip, "mac": ep.mac,
                    })).collect::<Vec<_>>(),
                });
                info.insert("info".to_string(), v.to_string());
            }
            Ok(cri::PodSandboxStatusResponse {
                status: Some(sandbox_status(&engine, cni.as_deref(), &p, &r)),
                info,
                containers_statuses: vec![],
                timestamp: now_nanos(),
            })
        })
        .await
        .map(Response::new)
    }

    async fn list_pod_sandbox(
        &self,
        req: Request<cri::ListPodSandboxRequest>,
    ) -> R<cri::ListPodSandboxResponse> {
        let filter = req.into_inner().filter.unwrap_or_default();
        let engine = self.engine.clone();
        blocking(move || {
            let mut items: Vec<cri::PodSandbox> = cri_pods(&engine)
                .iter()
                .filter(|(p, _)| {
                    pod_selected(&filter.id, &filter.label_selector, p)
                        && filter
                            .state
                            .as_ref()
                            .is_none_or(|s| s.state == pod_state(p))
                })
                .map(|(p, r)| to_sandbox(p, r))
                .collect();
            items.sort_by_key(|s| s.created_at);
            Ok(cri::ListPodSandboxResponse { items })
        })
        .await
        .map(Response::new)
    }

    async fn create_container(
        &self,
        req: Request<cri::CreateContainerRequest>,
    ) -> R<cri::CreateContainerResponse> {
        let req = req.into_inner();
        let config = req
            .config
            .ok_or_else(|| Status::invalid_argument("config is missing"))?;
        let engine = self.engine.clone();
        let host = self.host.clone();
        blocking(move || {
            let (pod, record) = cri_pod(&engine, &req.pod_sandbox_id)?;
            let wanted = config
                .image
                .as_ref()
                .map(|i| i.image.clone())
                .unwrap_or_default();
            if wanted.is_empty() {
                return Err(Status::invalid_argument("config.image is empty"));
            }
            let image = engine.image(&wanted).map_err(|_| {
                Status::not_found(format!("image {wanted:?} is not present (pull it first)"))
            })?;
            let meta = config.metadata.clone().unwrap_or_default();
            let pause = record
                .shared_pid
                .then(|| engine.container(&translate::pause_name(&pod.name)).ok())
                .flatten()
                .map(|c| c.id);
            let (cfg, crec) = translate::container_config(
                &config,
                &pod.id,
                &record,
                pause.as_deref(),
                &image,
                host.as_ref(),
            )
            .map_err(refused)?;
            // TARGET: only a container of the same pod.
            if let silo_engine::Sharing::Container(t) = &cfg.namespaces.pid {
                if pause.as_deref() != Some(t.as_str()) {
                    let same_pod = cri_container(&engine, t)
                        .is_ok_and(|(c, _)| c.config.pod.as_deref() == Some(pod.id.as_str()));
                    if !same_pod {
                        return Err(Status::invalid_argument(format!(
                            "namespace_options.target_id {t:?} is not a container of pod {}",
                            pod.id
                        )));
                    }
                }
            }
            let created = engine
                .create(silo_engine::CreateRequest {
                    id: None,
                    name: Some(translate::container_name(&meta, &record)),
                    config: cfg,
                    extensions: extension(&crec)?,
                })
                .map_err(status)?;
            Ok(cri::CreateContainerResponse {
                container_id: created.id,
            })
        })
        .await
        .map(Response::new)
    }

    async fn start_container(
        &self,
        req: Request<cri::StartContainerRequest>,
    ) -> R<cri::StartContainerResponse> {
        let id = req.into_inner().container_id;
        let engine = self.engine.clone();
        blocking(move || {
            let (c, r) = cri_container(&engine, &id)?;
            if !r.log_path.is_empty() {
                if let Some(dir) = std::path::Path::new(&r.log_path).parent() {
                    std::fs::create_dir_all(dir).map_err(|e| {
                        Status::internal(format!(
                            "creating the log directory {}: {e}",
                            dir.display()
                        ))
                    })?;
                }
            }
            engine.start(&c.id).map_err(status).map(|_| ())
        })
        .await?;
        Ok(Response::new(cri::StartContainerResponse {}))
    }

    async fn stop_container(
        &self,
        req: Request<cri::StopContainerRequest>,
    ) -> R<cri::StopContainerResponse> {
        let req = req.into_inner();
        let engine = self.engine.clone();
        blocking(move || {
            let c = match cri_container(&engine, &req.container_id) {
                Ok((c, _)) => c,
                Err(e) if e.code() == tonic::Code::NotFound => return Ok(()),
                Err(e) => return Err(e),
            };
            engine
                .stop(&c.id, None, Some(req.timeout.max(0)))
                .map_err(status)
                .map(|_| ())
        })
        .await?;
        Ok(Response::new(cri::StopContainerResponse {}))
    }

    async fn remove_container(
        &self,
        req: Request<cri::RemoveContainerRequest>,
    ) -> R<cri::RemoveContainerResponse> {
        let id = req.into_inner().container_id;
        let engine = self.engine.clone();
        blocking(move || {
            let c = match cri_container(&engine, &id) {
                Ok((c, _)) => c,
                Err(e) if e.code() == tonic::Code::NotFound => return Ok(()),
                Err(e) => return Err(e),
            };
            match engine.remove(&c.id, true, true) {
                Ok(()) | Err(silo_engine::Error::NotFound { .. }) => Ok(()),
                Err(e) => Err(status(e)),
            }
        })
        .await?;
        Ok(Response::new(cri::RemoveContainerResponse {}))
    }

    async fn list_containers(
        &self,
        req: Request<cri::ListContainersRequest>,
    ) -> R<cri::ListContainersResponse> {
        let filter = req.into_inner().filter.unwrap_or_default();
        let engine = self.engine.clone();
        blocking(move || {
            let mut containers: Vec<cri::Container> = cri_containers(&engine)
                .iter()
                .filter(|(c, _)| {
                    selects(
                        &filter.id,
                        &filter.pod_sandbox_id,
                        &filter.label_selector,
                        c,
                    ) && filter
                        .state
                        .as_ref()
                        .is_none_or(|s| s.state == container_state(c))
                })
                .map(|(c, r)| to_container(c, r))
                .collect();
            containers.sort_by_key(|c| c.created_at);
            Ok(cri::ListContainersResponse { containers })
        })
        .await
        .map(Response::new)
    }

    async fn container_status(
        &self,
        req: Request<cri::ContainerStatusRequest>,
    ) -> R<cri::ContainerStatusResponse> {
        let req = req.into_inner();
        let engine = self.engine.clone();
        blocking(move || {
            let (c, r) = cri_container(&engine, &req.container_id)?;
            let mut info = HashMap::new();
            if req.verbose {
                let v = serde_json::json!({
                    "pid": c.state.status.run().map_or(0, |r| r.pid),
                    "pod": c.config.pod,
                    "name": c.name,
                    "spec": &*c.spec,
                });
                info.insert("info".to_string(), v.to_string());
            }
            Ok(cri::ContainerStatusResponse {
                status: Some(container_status(&c, &r)),
                info,
            })
        })
        .await
        .map(Response::new)
    }

    async fn update_container_resources(
        &self,
        req: Request<cri::UpdateContainerResourcesRequest>,
    ) -> R<cri::UpdateContainerResourcesResponse> {
        let req = req.into_inner();
        let engine = self.engine.clone();
        blocking(move || {
            let (c, _) = cri_container(&engine, &req.container_id)?;
            let res = translate::resources(&req.linux.unwrap_or_default()).map_err(refused)?;
            engine
                .update(
                    &c.id,
                    silo_engine::UpdateRequest {
                        resources: Some(res),
                        ..Default::default()
                    },
                )
                .map_err(status)
        })
        .await?;
        Ok(Response::new(cri::UpdateContainerResourcesResponse {}))
    }

    async fn reopen_container_log(
        &self,
        req: Request<cri::ReopenContainerLogRequest>,
    ) -> R<cri::ReopenContainerLogResponse> {
        let id = req.into_inner().container_id;
        let engine = self.engine.clone();
        blocking(move || {
            let (c, r) = cri_container(&engine, &id)?;
            if r.log_path.is_empty() {
                return Err(Status::failed_precondition(format!(
                    "container {} has no log path",
                    c.id
                )));
            }
            engine.reopen_log(&c.id).map_err(status)
        })
        .await?;
        Ok(Response::new(cri::ReopenContainerLogResponse {}))
    }

    async fn exec_sync(&self, req: Request<cri::ExecSyncRequest>) -> R<cri::ExecSyncResponse> {
        let req = req.into_inner();
        let engine = self.engine.clone();
        blocking(move || {
            let (c, _) = cri_container(&engine, &req.container_id)?;
            crate::exec::exec_sync(&engine, &c.id, req.cmd, req.timeout)
        })
        .await
        .map(Response::new)
    }

    async fn exec(&self, req: Request<cri::ExecRequest>) -> R<cri::ExecResponse> {
        let req = req.into_inner();
        if req.cmd.is_empty() {
            return Err(Status::invalid_argument("cmd is empty"));
        }
        if !(req.stdout || req.stderr || req.stdin) {
            return Err(Status::invalid_argument(
                "one of stdin, stdout and stderr must be set",
            ));
        }
        if req.tty && req.stderr {
            return Err(Status::invalid_argument(
                "tty and stderr cannot both be set (a terminal has one output)",
            ));
        }
        let id = self.running(&req.container_id).await?;
        let url = self.streams.issue(crate::streaming::Pending::Exec {
            container: id,
            cmd: req.cmd,
            tty: req.tty,
            stdin: req.stdin,
            stdout: req.stdout,
            stderr: req.stderr,
        });
        Ok(Response::new(cri::ExecResponse { url }))
    }

    async fn attach(&self, req: Request<cri::AttachRequest>) -> R<cri::AttachResponse> {
        let req = req.into_inner();
        if !(req.stdout || req.stderr || req.stdin) {
            return Err(Status::invalid_argument(
                "one of stdin, stdout and stderr must be set",
            ));
        }
        let id = self.running(&req.container_id).await?;
        let engine = self.engine.clone();
        let (cid, tty) = (id.clone(), req.tty);
        blocking(move || {
            let c = engine.container(&cid).map_err(status)?;
            if c.config.process.terminal != tty {
                return Err(Status::invalid_argument(format!(
                    "tty is {tty}, but container {cid} was created with tty {}",
                    c.config.process.terminal
                )));
            }
            Ok(())
        })
        .await?;
        let url = self.streams.issue(crate::streaming::Pending::Attach {
            container: id,
            tty,
            stdin: req.stdin,
            stdout: req.stdout,
            stderr: req.stderr,
        });
        Ok(Response::new(cri::AttachResponse { url }))
    }

    async fn port_forward(
        &self,
        req: Request<cri::PortForwardRequest>,
    ) -> R<cri::PortForwardResponse> {
        let req = req.into_inner();
        let engine = self.engine.clone();
        let id = req.pod_sandbox_id.clone();
        let pod = blocking(move || {
            let (p, _) = cri_pod(&engine, &id)?;
            if p.status != PodStatus::Ready {
                return Err(Status::failed_precondition(format!(
                    "pod {} is not ready",
                    p.id
                )));
            }
            Ok(p.id)
        })
        .await?;
        if let Some(bad) = req.port.iter().find(|p| !(1..=65535).contains(*p)) {
            return Err(Status::invalid_argument(format!(
                "port {bad} is not a port number"
            )));
        }
        let url = self.streams.issue(crate::streaming::Pending::PortForward {
            pod,
            ports: req.port,
        });
        Ok(Response::new(cri::PortForwardResponse { url }))
    }

    async fn container_stats(
        &self,
        req: Request<cri::ContainerStatsRequest>,
    ) -> R<cri::ContainerStatsResponse> {
        let id = req.into_inner().container_id;
        let engine = self.engine.clone();
        blocking(move || {
            let (c, r) = cri_container(&engine, &id)?;
            Ok(cri::ContainerStatsResponse {
                stats: Some(container_stats(&engine, &c, &r)),
            })
        })
        .await
        .map(Response::new)
    }

    async fn list_container_stats(
        &self,
        req: Request<cri::ListContainerStatsRequest>,
    ) -> R<cri::ListContainerStatsResponse> {
        let filter = req.into_inner().filter.unwrap_or_default();
        let engine = self.engine.clone();
        blocking(move || {
            let stats = cri_containers(&engine)
                .iter()
                .filter(|(c, _)| {
                    selects(
                        &filter.id,
                        &filter.pod_sandbox_id,
                        &filter.label_selector,
                        c,
                    )
                })
                .map(|(c, r)| container_stats(&engine, c, r))
                .collect();
            Ok(cri::ListContainerStatsResponse { stats })
        })
        .await
        .map(Response::new)
    }

    async fn pod_sandbox_stats(
        &self,
        req: Request<cri::PodSandboxStatsRequest>,
    ) -> R<cri::PodSandboxStatsResponse> {
        let id = req.into_inner().pod_sandbox_id;
        let engine = self.engine.clone();
        blocking(move || {
            let (p, r) = cri_pod(&engine, &id)?;
            Ok(cri::PodSandboxStatsResponse {
                stats: Some(sandbox_stats(&engine, &p, &r)),
            })
        })
        .await
        .map(Response::new)
    }

    async fn list_pod_sandbox_stats(
        &self,
        req: Request<cri::ListPodSandboxStatsRequest>,
    ) -> R<cri::ListPodSandboxStatsResponse> {
        let filter = req.into_inner().filter.unwrap_or_default();
        let engine = self.engine.clone();
        blocking(move || {
            let stats = cri_pods(&engine)
                .iter()
                .filter(|(p, _)| pod_selected(&filter.id, &filter.label_selector, p))
                .map(|(p, r)| sandbox_stats(&engine, p, r))
                .collect();
            Ok(cri::ListPodSandboxStatsResponse { stats })
        })
        .await
        .map(Response::new)
    }

    async fn update_runtime_config(
        &self,
        req: Request<cri::UpdateRuntimeConfigRequest>,
    ) -> R<cri::UpdateRuntimeConfigResponse> {
        // The kubelet sends the node's pod CIDR here; CNI plugins get it
        // from their own config, and silo's network has its own subnet.
        let cidr = req
            .into_inner()
            .runtime_config
            .and_then(|c| c.network_config)
            .map(|n| n.pod_cidr)
            .unwrap_or_default();
        if !cidr.is_empty() {
            tracing::info!(pod_cidr = %cidr, "the kubelet reported the node's pod CIDR");
        }
        Ok(Response::new(cri::UpdateRuntimeConfigResponse {}))
    }

    async fn status(&self, req: Request<cri::StatusRequest>) -> R<cri::StatusResponse> {
        let verbose = req.into_inner().verbose;
        let cni = self.cni.clone();
        // Read the config directory once, off the runtime's thread.
        let c2 = cni.clone();
        let loaded = blocking(move || Ok(c2.map(|c| c.load().map_err(|e| e.to_string())))).await?;
        let network = match &loaded {
            Some(Err(e)) => Err(e.clone()),
            _ => Ok(()),
        };
        let (net_ok, net_reason, net_msg) = match network {
            Ok(()) => (true, String::new(), String::new()),
            Err(m) => (false, "NetworkPluginNotReady".to_string(), m),
        };
        let mut info = HashMap::new();
        if verbose {
            info.insert(
                "config".into(),
                serde_json::json!({
                    "network": match &loaded {
                        Some(Ok(Some(_))) => "cni",
                        Some(Err(_)) => "cni (config broken)",
                        _ => "silo nat",
                    },
                    "cni": cni.as_ref().map(|c| serde_json::json!({
                        "confDir": c.conf_dir, "binDirs": c.bin_dirs,
                        "config": loaded.as_ref().and_then(|l| l.as_ref().ok()).and_then(|l| l.as_ref()).map(|l| l.path.clone()),
                    })),
                    "apparmor": "unsupported",
                    "selinux": "unsupported",
                    "cgroupDriver": "cgroupfs",
                })
                .to_string(),
            );
        }
        Ok(Response::new(cri::StatusResponse {
            status: Some(cri::RuntimeStatus {
                conditions: vec![
                    cri::RuntimeCondition {
                        r#type: "RuntimeReady".into(),
                        status: true,
                        reason: String::new(),
                        message: String::new(),
                    },
                    cri::RuntimeCondition {
                        r#type: "NetworkReady".into(),
                        status: net_ok,
                        reason: net_reason,
                        message: net_msg,
                    },
                ],
            }),
            info,
            runtime_handlers: vec![cri::RuntimeHandler {
                name: String::new(),
                features: Some(cri::RuntimeHandlerFeatures {
                    recursive_read_only_mounts: false,
                    user_namespaces: false,
                }),
            }],
            features: Some(cri::RuntimeFeatures {
                supplemental_groups_policy: false,
            }),
        }))
    }

    async fn checkpoint_container(
        &self,
        _: Request<cri::CheckpointContainerRequest>,
    ) -> R<cri::CheckpointContainerResponse> {
        Err(Status::unimplemented(
            "CheckpointContainer: checkpoints are not supported by silo",
        ))
    }

    type GetContainerEventsStream =
        tokio_stream::wrappers::ReceiverStream<Result<cri::ContainerEventResponse, Status>>;

    async fn get_container_events(
        &self,
        _: Request<cri::GetEventsRequest>,
    ) -> R<Self::GetContainerEventsStream> {
        let (tx, rx) = tokio::sync::mpsc::channel(256);
        let engine = self.engine.clone();
        let cni = self.cni.clone();
        let events = engine.events(None, None);
        // A thread per watcher: the engine's subscription is a blocking
        // channel. It ends when the watcher goes (the next send fails).
        std::thread::Builder::new()
            .name("cri-events".into())
            .spawn(move || {
                let mut pods_of = HashMap::new();
                loop {
                    let e = match events.recv_timeout(std::time::Duration::from_secs(1)) {
                        Ok(e) => e,
                        // Notice a watcher that went away even when quiet.
                        Err(std::sync::mpsc::RecvTimeoutError::Timeout) if !tx.is_closed() => {
                            continue
                        }
                        Err(_) => return,
                    };
                    for ev in container_event(&engine, cni.as_deref(), &e, &mut pods_of)
                        .into_iter()
                        .flatten()
                    {
                        match tx.try_send(Ok(ev)) {
                            Ok(()) => {}
                            // A watcher that stopped reading is let go (the
                            // kubelet then relists), so nothing piles up.
                            Err(tokio::sync::mpsc::error::TrySendError::Full(_)) => {
                                tracing::warn!(
                                    "a container-event watcher fell behind; its stream is closed"
                                );
                                return;
                            }
                            Err(_) => return,
                        }
                    }
                }
            })
            .map_err(|e| Status::internal(format!("starting the event thread: {e}")))?;
        Ok(Response::new(tokio_stream::wrappers::ReceiverStream::new(
            rx,
        )))
    }

    async fn list_metric_descriptors(
        &self,
        _: Request<cri::ListMetricDescriptorsRequest>,
    ) -> R<cri::ListMetricDescriptorsResponse> {
        Ok(Response::new(cri::ListMetricDescriptorsResponse {
            descriptors: vec![],
        }))
    }

    async fn list_pod_sandbox_metrics(
        &self,
        _: Request<cri::ListPodSandboxMetricsRequest>,
    ) -> R<cri::ListPodSandboxMetricsResponse> {
        Ok(Response::new(cri::ListPodSandboxMetricsResponse {
            pod_metrics: vec![],
        }))
    }

    async fn runtime_config(
        &self,
        _: Request<cri::RuntimeConfigRequest>,
    ) -> R<cri::RuntimeConfigResponse> {
        Ok(Response::new(cri::RuntimeConfigResponse {
            linux: Some(cri::LinuxRuntimeConfiguration {
                cgroup_driver: cri::CgroupDriver::Cgroupfs as i32,
            }),
        }))
    }
}

/// A pod name being created (removed from the set when dropped).
struct Making {
    set: std::sync::Arc<std::sync::Mutex<std::collections::HashSet<String>>>,
    name: String,
}

impl Making {
    fn take(
        set: &std::sync::Arc<std::sync::Mutex<std::collections::HashSet<String>>>,
        name: &str,
    ) -> Option<Making> {
        let fresh = set
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_string());
        fresh.then(|| Making {
            set: set.clone(),
            name: name.to_string(),
        })
    }
}

impl Drop for Making {
    fn drop(&mut self) {
        self.set
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.name);
    }
}

/// Whether a pod got everything RunPodSandbox gives: ready, its CNI
/// result, its running pause container.
fn pod_complete(engine: &Engine, cni: Option<&crate::cni::CniConfig>, p: &Pod) -> bool {
    let Some(r) = pod_record(p) else {
        return false;
    };
    let network = !r.cni || cni.is_some_and(|c| c.ip(&p.id).is_some());
    let pause = !r.shared_pid
        || engine
            .container(&translate::pause_name(&p.name))
            .is_ok_and(|c| c.state.status.is_running());
    p.status == PodStatus::Ready && network && pause
}

/// Starts the pause container that is PID 1 of a pod's shared PID
/// namespace (pulled if missing). It carries no CRI record, so the CRI
/// lists it nowhere; it goes with the pod.
fn start_pause(engine: &Engine, p: &Pod, image: &str) -> Result<(), Status> {
    let img = match engine.image(image) {
        Ok(i) => i,
        Err(_) => engine
            .pull(
                &silo_engine::TransferRequest {
                    reference: image.to_string(),
                    credentials: None,
                    platform: None,
                },
                &|_| {},
            )
            .map_err(|e| {
                Status::failed_precondition(format!(
                    "the pause image {image} (--cri-pause-image) for a shared PID namespace: {e}"
                ))
            })?,
    };
    let ic = &img.config.config;
    let args: Vec<String> = ic
        .entrypoint
        .clone()
        .unwrap_or_default()
        .into_iter()
        .chain(ic.cmd.clone().unwrap_or_default())
        .collect();
    if args.is_empty() {
        return Err(Status::failed_precondition(format!(
            "the pause image {image} names no command"
        )));
    }
    let created = engine
        .create(silo_engine::CreateRequest {
            id: None,
            name: Some(translate::pause_name(&p.name)),
            config: silo_engine::ContainerConfig {
                image: silo_engine::ImageRef {
                    name: image.to_string(),
                    id: img.id.clone(),
                },
                process: silo_engine::ProcessConfig {
                    args,
                    env: ic.env.clone().unwrap_or_default(),
                    cwd: "/".into(),
                    capabilities: Vec::new(),
                    no_new_privileges: true,
                    ..Default::default()
                },
                pod: Some(p.id.clone()),
                labels: p.config.labels.clone(),
                log: silo_engine::LogConfig {
                    enabled: false,
                    ..Default::default()
                },
                ..Default::default()
            },
            extensions: Default::default(),
        })
        .map_err(status)?;
    engine.start(&created.id).map_err(status)?;
    Ok(())
}

fn pod_info<'a>(
    p: &'a Pod,
    r: &'a PodRecord,
    netns: &'a std::path::Path,
) -> crate::cni::PodInfo<'a> {
    crate::cni::PodInfo {
        id: &p.id,
        netns,
        name: &r.name,
        namespace: &r.namespace,
        uid: &r.uid,
        port_mappings: &r.port_mappings,
    }
}

/// Releases a CNI pod's network (before its namespace goes).
fn cni_del(
    cni: Option<&crate::cni::CniConfig>,
    engine: &Engine,
    p: &Pod,
    r: &PodRecord,
) -> Result<(), Status> {
    let (Some(cni), true) = (cni, r.cni) else {
        return Ok(());
    };
    let netns = engine.pod_netns(&p.id);
    cni.del(&pod_info(p, r, &netns)).map_err(|errors| {
        Status::internal(
            errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; "),
        )
    })
}

fn refused(r: translate::Refused) -> Status {
    Status::invalid_argument(r.to_string())
}

impl Cri {
    /// The engine id of a CRI container that is running.
    async fn running(&self, id: &str) -> Result<String, Status> {
        let engine = self.engine.clone();
        let id = id.to_string();
        blocking(move || {
            let (c, _) = cri_container(&engine, &id)?;
            if !c.state.status.is_running() {
                return Err(Status::failed_precondition(format!(
                    "container {} is not running",
                    c.id
                )));
            }
            Ok(c.id)
        })
        .await
    }
}
