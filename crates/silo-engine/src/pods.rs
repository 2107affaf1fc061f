//! Pods: groups of containers that share a network, an IPC and a UTS
//! namespace, which the pod pins before any of its containers exists (no
//! pause process holds them). This is what the Kubernetes CRI calls a pod
//! sandbox; a container joins one through [`crate::ContainerConfig::pod`].
//! A pod's namespaces live at `<exec_root>/pods/<id>/{net,ipc,uts}` with
//! the /etc files its containers share.

use crate::error::{Error, Kind, Result};
use crate::events::{Action, Scope};
use crate::model::{Extensions, NetworkMode};
use crate::network::{AttachRequest, Attachment};
use crate::Engine;
use serde::{Deserialize, Serialize};
use silo_oci::NamespaceType;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// What a pod is.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodConfig {
    pub name: String,
    /// The hostname its containers share; empty: the first 12 characters of the id.
    pub hostname: String,
    pub labels: BTreeMap<String, String>,
    /// `Default` (its own namespace, attached by the network service),
    /// `None` (loopback only) or `Host` (the host's network; no namespace).
    pub network: NetworkMode,
    /// Its containers share the host's IPC namespace (the pod pins none).
    #[serde(default)]
    pub host_ipc: bool,
    /// Ports published to the pod's network (on the default network only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<silo_network::ports::PortRequest>,
    /// Name resolution for the pod's resolv.conf.
    #[serde(default, skip_serializing_if = "crate::model::DnsConfig::is_empty")]
    pub dns: crate::model::DnsConfig,
}

/// Whether a pod's namespaces are in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PodStatus {
    Ready,
    /// Stopped, or its namespaces were lost (a reboot): its containers cannot run.
    NotReady,
}

/// A pod on record.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Pod {
    pub id: String,
    pub name: String,
    /// RFC 3339.
    pub created: String,
    pub config: PodConfig,
    pub status: PodStatus,
    #[serde(default)]
    pub extensions: Extensions,
}

impl Pod {
    pub fn hostname(&self) -> String {
        if self.config.hostname.is_empty() {
            self.id.chars().take(12).collect()
        } else {
            self.config.hostname.clone()
        }
    }
}

/// The namespaces a pod shares, and their file names in its directory.
fn shared(config: &PodConfig) -> Vec<(NamespaceType, &'static str)> {
    let mut v = Vec::new();
    if config.network != NetworkMode::Host {
        v.push((NamespaceType::Network, "net"));
    }
    if !config.host_ipc {
        v.push((NamespaceType::Ipc, "ipc"));
    }
    v.push((NamespaceType::Uts, "uts"));
    v
}

impl Engine {
    /// A pod's directory: its pinned namespaces and /etc files.
    pub(crate) fn pod_dir(&self, id: &str) -> PathBuf {
        self.config.exec_root.join("pods").join(id)
    }

    /// The pod's pinned network namespace (for CNI plugins).
    pub fn pod_netns(&self, id: &str) -> PathBuf {
        self.pod_dir(id).join("net")
    }

    pub(crate) fn pods_lock(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, Pod>> {
        self.pods.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Finds a pod by id, unique id prefix or name.
    pub fn pod(&self, name_or_id: &str) -> Result<Pod> {
        let pods = self.pods_lock();
        if let Some(p) = pods.get(name_or_id) {
            return Ok(p.clone());
        }
        if let Some(p) = pods.values().find(|p| p.name == name_or_id) {
            return Ok(p.clone());
        }
        let mut hits = pods.values().filter(|p| p.id.starts_with(name_or_id));
        match (hits.next(), hits.next()) {
            (Some(p), None) if !name_or_id.is_empty() => Ok(p.clone()),
            _ => Err(Error::not_found(Kind::Pod, name_or_id)),
        }
    }

    pub fn pods(&self) -> Vec<Pod> {
        self.pods_lock().values().cloned().collect()
    }

    /// Creates a pod: pins its namespaces, lets the network service attach
    /// its network, writes the /etc files its containers share.
    pub fn create_pod(&self, config: PodConfig, extensions: Extensions) -> Result<Pod> {
        if config.network != NetworkMode::Default
            && config.network != NetworkMode::None
            && config.network != NetworkMode::Host
        {
            return Err(Error::invalid(
                "network",
                "a pod's network is its own (default or none) or the host's",
            ));
        }
        if !config.ports.is_empty() && config.network != NetworkMode::Default {
            return Err(Error::invalid(
                "ports",
                "ports are published on the pod's own network, not on the host's or none",
            ));
        }
        if !crate::model::valid_name(&config.name) {
            return Err(Error::invalid(
                "name",
                format!("invalid pod name {:?}", config.name),
            ));
        }
        let pod = Pod {
            id: silo_sys::id::random_id(),
            name: config.name.clone(),
            created: silo_units::now_rfc3339(),
            config,
            status: PodStatus::Ready,
            extensions,
        };
        {
            let mut pods = self.pods_lock();
            if let Some(other) = pods.values().find(|p| p.name == pod.name) {
                return Err(Error::conflict(format!(
                    "the pod name {:?} is already in use by pod {}",
                    pod.name, other.id
                )));
            }
            self.setup_pod(&pod)?;
            if let Err(e) = self.db.put_pod(&pod) {
                self.release_pod(&pod);
                return Err(e);
            }
            pods.insert(pod.id.clone(), pod.clone());
        }
        self.emit_with(Scope::Pod, Action::Create, &pod.id, pod_attributes(&pod));
        Ok(pod)
    }

    /// Pins the pod's namespaces and attaches its network; undoes itself on failure.
    fn setup_pod(&self, pod: &Pod) -> Result<()> {
        let dir = self.pod_dir(&pod.id);
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::internal(format!("creating {}", dir.display()), e))?;
        let ns: Vec<(NamespaceType, PathBuf)> = shared(&pod.config)
            .into_iter()
            .map(|(t, f)| (t, dir.join(f)))
            .collect();
        let hostname = pod.hostname();
        let result = silo_isolation::pin::pin(&ns, Some(&hostname))
            .map_err(|e| Error::internal(format!("pod {}", pod.id), e))
            .and_then(|()| {
                let att = match pod.config.network {
                    NetworkMode::Default => self
                        .network
                        .attach(&AttachRequest {
                            owner: &pod.id,
                            netns: &dir.join("net"),
                            mode: &pod.config.network,
                            hostname: &hostname,
                            ports: &pod.config.ports,
                            names: &[],
                            dns_servers: &pod.config.dns.servers,
                        })
                        .map_err(|e| {
                            Error::internal("attaching the pod's network", std::io::Error::other(e))
                        })?,
                    _ => Attachment::default(),
                };
                crate::network::write_etc_files(
                    &dir,
                    &crate::network::EtcFiles {
                        hostname: &hostname,
                        att: &att,
                        extra_hosts: &[],
                        dns: &pod.config.dns,
                        own_netns: pod.config.network != NetworkMode::Host,
                    },
                    Path::new("/etc/resolv.conf"),
                )
                .map_err(|e| Error::internal("writing the pod's /etc files", e))
            });
        if result.is_err() {
            self.release_pod(pod);
        }
        result
    }

    /// Detaches the pod's network and releases its namespaces (idempotent).
    fn release_pod(&self, pod: &Pod) -> Vec<String> {
        let mut errors = Vec::new();
        if pod.config.network == NetworkMode::Default {
            if let Err(e) = self.network.detach(&pod.id) {
                errors.push(e);
            }
        }
        let dir = self.pod_dir(&pod.id);
        for (_, f) in shared(&pod.config) {
            if let Err(e) = silo_isolation::pin::unpin(&dir.join(f)) {
                errors.push(e.to_string());
            }
        }
        errors
    }

    /// The namespaces a container of the pod joins (the pod must be ready).
    pub(crate) fn pod_namespaces(&self, id: &str) -> Result<Vec<(NamespaceType, PathBuf)>> {
        let pod = self.pod(id)?;
        if pod.status != PodStatus::Ready {
            return Err(Error::conflict(format!("pod {} is not ready", pod.id)));
        }
        let dir = self.pod_dir(&pod.id);
        Ok(shared(&pod.config)
            .into_iter()
            .map(|(t, f)| (t, dir.join(f)))
            .collect())
    }

    fn pod_members(&self, pod_id: &str) -> Vec<String> {
        self.lock()
            .values()
            .filter(|c| c.config.pod.as_deref() == Some(pod_id))
            .map(|c| c.id.clone())
            .collect()
    }

    /// Stops every container of the pod (at once: SIGKILL after `timeout`
    /// seconds) and releases its namespaces; the pod stays, not ready.
    pub fn stop_pod(&self, id: &str, timeout: Option<i64>) -> Result<()> {
        let pod = self.pod(id)?;
        let mut errors = Vec::new();
        for c in self.pod_members(&pod.id) {
            if let Err(e) = self.stop(&c, None, timeout) {
                errors.push(e.to_string());
            }
        }
        errors.extend(self.release_pod(&pod));
        let mut stopped = pod.clone();
        stopped.status = PodStatus::NotReady;
        self.db.put_pod(&stopped)?;
        self.pods_lock().insert(pod.id.clone(), stopped);
        if !errors.is_empty() {
            return Err(Error::internal(
                format!("stopping pod {}", pod.id),
                std::io::Error::other(errors.join("; ")),
            ));
        }
        // A second stop of a stopped pod changes nothing to announce.
        if pod.status == PodStatus::Ready {
            self.emit_with(Scope::Pod, Action::Stop, &pod.id, pod_attributes(&pod));
        }
        Ok(())
    }

    /// Removes the pod and every container in it.
    pub fn remove_pod(&self, id: &str) -> Result<()> {
        let pod = self.pod(id)?;
        let mut errors = Vec::new();
        for c in self.pod_members(&pod.id) {
            if let Err(e) = self.remove(&c, true, true) {
                errors.push(e.to_string());
            }
        }
        errors.extend(self.release_pod(&pod));
        let dir = self.pod_dir(&pod.id);
        if let Err(e) = std::fs::remove_dir_all(&dir) {
            if e.kind() != std::io::ErrorKind::NotFound {
                errors.push(format!("removing {}: {e}", dir.display()));
            }
        }
        if !errors.is_empty() {
            return Err(Error::internal(
                format!("removing pod {}", pod.id),
                std::io::Error::other(errors.join("; ")),
            ));
        }
        self.db.delete_pod(&pod.id)?;
        self.pods_lock().remove(&pod.id);
        self.emit_with(Scope::Pod, Action::Destroy, &pod.id, pod_attributes(&pod));
        Ok(())
    }

    /// At startup: a ready pod whose namespaces are gone (a reboot wiped
    /// the exec root) is not ready any more.
    pub(crate) fn recover_pods(&self) {
        let lost: Vec<Pod> = self
            .pods_lock()
            .values()
            .filter(|p| p.status == PodStatus::Ready)
            .filter(|p| {
                let dir = self.pod_dir(&p.id);
                shared(&p.config)
                    .iter()
                    .any(|(_, f)| !silo_isolation::pin::is_pinned(&dir.join(f)))
            })
            .cloned()
            .collect();
        for mut p in lost {
            tracing::warn!("pod {}: its namespaces are gone; it is not ready", p.id);
            self.release_pod(&p);
            p.status = PodStatus::NotReady;
            if self.db.put_pod(&p).is_ok() {
                self.pods_lock().insert(p.id.clone(), p);
            }
        }
    }
}

fn pod_attributes(p: &Pod) -> BTreeMap<String, String> {
    let mut a = p.config.labels.clone();
    a.insert("name".into(), p.name.clone());
    a
}
