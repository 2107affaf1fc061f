//! A container's life, stage by stage: create (reserve the name) →
//! prepare (directory, snapshot, volumes, spec) → attach network (pinned
//! namespace, network service, /etc files) → spawn (the monitor) → running
//! → exit (recorded from the monitor's exit.json) → detach → and, by the
//! restart policy, again, or removed. Each stage's inverse is a teardown
//! [`Step`](crate::Step) (`teardown.rs`).

use crate::error::{Error, Kind, Result, Step};
use crate::events::{Action, Scope};
use crate::model::{
    self, Container, ContainerConfig, Exit, Extensions, MountKind, MountPoint, MountRequest,
    NetworkMode, RestartPolicy, Run, Sharing, State, Status,
};
use crate::network::{AttachRequest, Attachment};
use crate::{spec, Engine};
use silo_monitor::protocol::{self as monitor, ExitInfo};
use silo_oci::{mount, NamespaceType};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// A container to create.
#[derive(Debug, Clone, Default)]
pub struct CreateRequest {
    /// The id to give it (64 lowercase hex digits); None: a random one.
    pub id: Option<String>,
    /// Its name; None: a random `adjective_noun`.
    pub name: Option<String>,
    pub config: ContainerConfig,
    /// Front-end data kept with it ([`Container::extensions`]).
    pub extensions: Extensions,
}

/// A created container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Created {
    pub id: String,
    pub name: String,
}

/// Whether an operation changed anything (start of a running container
/// and stop of a stopped one do not).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Done,
    Unchanged,
}

/// What `wait` waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitCondition {
    /// Not running (now or later).
    NotRunning,
    /// The next exit from now.
    NextExit,
    /// Removed.
    Removed,
}

/// How the waited-for exit went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaitResult {
    pub exit_code: i64,
    /// Why its last start failed, if it did.
    pub error: Option<String>,
}

/// Changes to a container's configuration that apply at once.
#[derive(Debug, Clone, Default)]
pub struct UpdateRequest {
    /// New cgroup limits (applied to a running container now).
    pub resources: Option<silo_oci::Resources>,
    pub restart: Option<RestartPolicy>,
    /// Front-end data to replace, by name.
    pub extensions: Extensions,
}

fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let what = what.into();
    move |e| Error::internal(what, e)
}

impl Engine {
    pub(crate) fn op_lock(&self, id: &str) -> std::sync::Arc<std::sync::Mutex<()>> {
        let mut locks = self.op_locks.lock().unwrap_or_else(|p| p.into_inner());
        locks.entry(id.to_string()).or_default().clone()
    }

    /// Applies `f` to the container's record, persists it (one
    /// transaction) and wakes waiters; a failed write changes nothing.
    /// Returns the updated copy.
    pub(crate) fn modify<T>(
        &self,
        id: &str,
        f: impl FnOnce(&mut Container) -> std::result::Result<T, model::Refused>,
    ) -> Result<(Container, T)> {
        let mut map = self.lock();
        let c = map
            .get_mut(id)
            .ok_or_else(|| Error::not_found(Kind::Container, id))?;
        let before = c.clone();
        let out = match f(c) {
            Ok(v) => v,
            Err(refused) => {
                *c = before;
                return Err(Error::conflict(format!("container {id}: {refused}")));
            }
        };
        if let Err(e) = self.db.put_container(c) {
            *c = before;
            return Err(e);
        }
        let copy = c.clone();
        drop(map);
        self.changed.notify_all();
        Ok((copy, out))
    }

    pub(crate) fn get(&self, id: &str) -> Result<Container> {
        self.container(id)
    }

    // ---------------------------------------------------------------- create

    /// Creates a container: reserves its name (one transaction), prepares
    /// its directory, filesystem, volumes and spec, and records it as
    /// created (a second). A failure removes everything it made.
    pub fn create(&self, req: CreateRequest) -> Result<Created> {
        let mut cfg = req.config;
        if cfg.storage.disk_size.is_none() {
            cfg.storage.disk_size = self.config.sandbox_disk;
        }
        if cfg.init && self.config.init_binary.is_none() {
            return Err(Error::invalid(
                "init",
                "no init binary: install Debian's tini package or start silod with --init-path",
            ));
        }
        let image = self
            .storage
            .image(&cfg.image.id)
            .map_err(|_| Error::not_found(Kind::Image, cfg.image.name.clone()))?;
        let cfg = ContainerConfig {
            image: model::ImageRef {
                name: cfg.image.name,
                id: image.id.clone(),
            },
            ..cfg
        };
        let cfg = self.resolve_sharing(cfg)?;
        let id = match req.id {
            Some(id) if id.len() == 64 && silo_sys::id::is_hex(&id) => id,
            Some(id) => {
                return Err(Error::invalid(
                    "id",
                    format!("{id:?} is not 64 lowercase hex digits"),
                ))
            }
            None => silo_sys::id::random_id(),
        };

        // Transaction 1: the name is ours.
        let placeholder = {
            let mut map = self.lock();
            if map.contains_key(&id) {
                return Err(Error::conflict(format!("container id {id} is in use")));
            }
            let name = match req.name.as_deref().filter(|n| !n.is_empty()) {
                Some(n) => {
                    let n = n.strip_prefix('/').unwrap_or(n);
                    if !model::valid_name(n) {
                        return Err(Error::invalid(
                            "name",
                            format!("Invalid container name ({n}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"),
                        ));
                    }
                    if let Some(other) = map.values().find(|c| c.name == n) {
                        return Err(name_taken(n, &other.id));
                    }
                    n.to_string()
                }
                None => {
                    let mut retry = 0;
                    loop {
                        let n = model::random_name(retry);
                        if !map.values().any(|c| c.name == n) {
                            break n;
                        }
                        retry += 1;
                    }
                }
            };
            let c = Container {
                id: id.clone(),
                name,
                created: silo_units::now_rfc3339(),
                config: cfg,
                state: State {
                    status: Status::Creating,
                    ..Default::default()
                },
                restart_count: 0,
                manual_stop: false,
                health: None,
                mounts: vec![],
                anonymous_volumes: vec![],
                spec: Default::default(),
                extensions: req.extensions,
                exit_seq: 0,
            };
            self.db.put_container(&c)?;
            map.insert(id.clone(), c.clone());
            c
        };

        let mut made_volumes = Vec::new();
        match self.prepare(placeholder, &mut made_volumes) {
            Ok(c) => {
                self.emit(Scope::Container, Action::Create, &c.id);
                Ok(Created {
                    id: c.id,
                    name: c.name,
                })
            }
            Err(e) => {
                let c = self.lock().get(&id).cloned();
                if let Some(mut c) = c {
                    c.anonymous_volumes = made_volumes;
                    let steps = [Step::Snapshot, Step::Volumes, Step::Files, Step::Record];
                    if let Err(t) = crate::teardown::run(self, &c, &steps, true) {
                        tracing::warn!("undoing the failed create of {id}: {t}");
                    }
                }
                Err(e)
            }
        }
    }

    /// Checks the containers and pod a config shares namespaces with, and
    /// names them by full id.
    fn resolve_sharing(&self, mut cfg: ContainerConfig) -> Result<ContainerConfig> {
        self.resolve_networks(&mut cfg.namespaces.network)?;
        if !cfg.links.is_empty()
            && !matches!(
                cfg.namespaces.network,
                NetworkMode::Networks(_) | NetworkMode::Default
            )
        {
            return Err(Error::invalid(
                "links",
                "links need a network (the default one or --network NAME), not --network none, host or container:",
            ));
        }
        if !cfg.ports.is_empty()
            && !matches!(
                cfg.namespaces.network,
                NetworkMode::Networks(_) | NetworkMode::Default
            )
        {
            return Err(Error::invalid(
                "ports",
                "conflicting options: port publishing and the container's network mode (none, host or container:)",
            ));
        }
        for (name, addr) in &cfg.extra_hosts {
            if name.is_empty()
                || addr != "host-gateway" && addr.parse::<std::net::IpAddr>().is_err()
            {
                return Err(Error::invalid(
                    "extra_hosts",
                    format!("invalid extra host {name}:{addr}: want NAME:IP or NAME:host-gateway"),
                ));
            }
        }
        for l in &mut cfg.links {
            l.container = self
                .resolve_id(&l.container)
                .map_err(|e| Error::invalid("links", format!("link {}: {e}", l.alias)))?;
        }
        let ns = &mut cfg.namespaces;
        if let NetworkMode::Container(t) = &mut ns.network {
            *t = self.resolve_id(t)?;
        }
        for (field, s) in [
            ("namespaces.ipc", &mut ns.ipc),
            ("namespaces.pid", &mut ns.pid),
            ("namespaces.uts", &mut ns.uts),
        ] {
            if let Sharing::Container(t) = s {
                *t = self
                    .resolve_id(t)
                    .map_err(|e| Error::invalid(field, e.to_string()))?;
            }
        }
        if let Some(pod) = &cfg.pod {
            let p = self.pod(pod)?;
            let shared = cfg.namespaces.network != NetworkMode::Default
                || cfg.namespaces.ipc != Sharing::Private
                || cfg.namespaces.uts != Sharing::Private;
            if shared {
                return Err(Error::invalid(
                    "namespaces",
                    format!("a container in pod {} takes its network, IPC and UTS namespaces from the pod", p.id),
                ));
            }
            // What the pod does not pin, its containers take from the host.
            if p.config.network == NetworkMode::Host {
                cfg.namespaces.network = NetworkMode::Host;
            }
            if p.config.host_ipc {
                cfg.namespaces.ipc = Sharing::Host;
            }
            cfg.pod = Some(p.id);
        }
        if let Some(parent) = &cfg.cgroup_parent {
            let bad = !parent.starts_with('/')
                || parent
                    .split('/')
                    .any(|c| c == ".." || c == "." || c.contains('\0'));
            if bad {
                return Err(Error::invalid(
                    "cgroup_parent",
                    format!("cgroup parent {parent:?}: want an absolute path without '.' or '..' components"),
                ));
            }
        }
        Ok(cfg)
    }

    /// Prepare: directory, snapshot, volumes and bind sources, the spec.
    fn prepare(&self, mut c: Container, made_volumes: &mut Vec<String>) -> Result<Container> {
        let dir = self.container_dir(&c.id);
        std::fs::create_dir_all(&dir).map_err(io_err(format!("creating {}", dir.display())))?;
        self.storage
            .create_snapshot_opts(
                &c.id,
                &c.config.image.id,
                silo_storage::SnapshotOptions {
                    volatile: c.config.auto_remove,
                    disk_size: c.config.storage.disk_size,
                },
            )
            .map_err(|e| match e {
                silo_storage::SnapshotError::DiskSize { .. } => {
                    Error::invalid("storage.disk_size", e.to_string())
                }
                e => Error::internal("creating the container filesystem", e),
            })?;
        let (oci_mounts, points, anonymous) =
            self.resolve_mounts(&c.config.mounts, made_volumes)?;
        // A container of a pod shares the pod's UTS namespace and name.
        let hostname = match &c.config.pod {
            Some(pod) => self.pod(pod)?.hostname(),
            None => c.hostname(),
        };
        let etc_dir = self.etc_dir(&c.config, &c.id);
        let mut spec = spec::generate(
            &c.id,
            &hostname,
            &c.config,
            &etc_dir,
            self.cgroupns,
            oci_mounts,
        )?;
        if c.config.init {
            if let Some(init) = &self.config.init_binary {
                spec::add_init(&mut spec, init);
            }
        }
        c.spec = spec.into();
        c.mounts = points;
        c.anonymous_volumes = anonymous;
        // Transaction 2: the container exists.
        let id = c.id.clone();
        self.modify(&id, move |slot| {
            *slot = c;
            slot.state.created()
        })
        .map(|(c, ())| c)
    }

    /// Where a container's /etc/hostname, hosts and resolv.conf are: the
    /// owner of its network namespace writes them (itself, its pod, or the
    /// container whose network it joins).
    pub fn etc_dir_of(&self, c: &Container) -> PathBuf {
        self.etc_dir(&c.config, &c.id)
    }

    pub(crate) fn etc_dir(&self, cfg: &ContainerConfig, id: &str) -> PathBuf {
        if let Some(pod) = &cfg.pod {
            return self.pod_dir(pod);
        }
        match &cfg.namespaces.network {
            NetworkMode::Container(t) => self.container_dir(t),
            _ => self.container_dir(id),
        }
    }

    /// The mounts' OCI form and what inspect reports; named volumes and
    /// bind sources are made as needed (made volumes listed in `made`).
    fn resolve_mounts(
        &self,
        requests: &[MountRequest],
        made: &mut Vec<String>,
    ) -> Result<(Vec<silo_oci::Mount>, Vec<MountPoint>, Vec<String>)> {
        let mut oci = Vec::new();
        let mut points = Vec::new();
        let mut anonymous = Vec::new();
        let mut seen: Vec<&str> = Vec::new();
        let rw = |readonly: bool| if readonly { "ro" } else { "rw" };
        for m in requests {
            let dst = m.destination();
            if !dst.starts_with('/') {
                return Err(Error::invalid(
                    "mounts",
                    format!("invalid mount destination {dst:?}: it must be an absolute path"),
                ));
            }
            if dst == "/" {
                return Err(Error::invalid("mounts", "invalid mount destination \"/\""));
            }
            if seen.contains(&dst) {
                return Err(Error::invalid(
                    "mounts",
                    format!("duplicate mount point: {dst}"),
                ));
            }
            seen.push(dst);
            match m {
                MountRequest::Bind {
                    source,
                    destination,
                    readonly,
                    propagation,
                    create_source,
                    mode,
                } => {
                    if !source.starts_with('/') {
                        return Err(Error::invalid(
                            "mounts",
                            format!("invalid bind source {source:?}: it must be an absolute path"),
                        ));
                    }
                    if !Path::new(source).exists() {
                        if !create_source {
                            return Err(Error::invalid(
                                "mounts",
                                format!("invalid mount config for type \"bind\": bind source path does not exist: {source}"),
                            ));
                        }
                        std::fs::create_dir_all(source).map_err(|e| {
                            Error::invalid(
                                "mounts",
                                format!("creating the bind source {source}: {e}"),
                            )
                        })?;
                    }
                    oci.push(mount(
                        destination,
                        "bind",
                        source,
                        &["rbind", propagation, rw(*readonly)],
                    ));
                    points.push(MountPoint {
                        kind: MountKind::Bind,
                        name: None,
                        source: source.clone(),
                        destination: destination.clone(),
                        readonly: *readonly,
                        propagation: propagation.clone(),
                        mode: mode.clone(),
                    });
                }
                MountRequest::Volume {
                    name,
                    destination,
                    readonly,
                } => {
                    let existed = name
                        .as_deref()
                        .is_some_and(|n| self.storage.volume(n).is_ok());
                    let v = self
                        .storage
                        .create_volume(name.as_deref(), Default::default())
                        .map_err(|e| Error::invalid("mounts", e.to_string()))?;
                    if !existed {
                        made.push(v.name.clone());
                        self.emit_with(
                            Scope::Volume,
                            Action::Create,
                            &v.name,
                            [("driver".to_string(), "local".to_string())].into(),
                        );
                    }
                    if name.is_none() {
                        anonymous.push(v.name.clone());
                    }
                    let data = v.mountpoint.to_string_lossy().into_owned();
                    oci.push(mount(
                        destination,
                        "bind",
                        &data,
                        &["rbind", "rprivate", rw(*readonly)],
                    ));
                    points.push(MountPoint {
                        kind: MountKind::Volume,
                        name: Some(v.name),
                        source: data,
                        destination: destination.clone(),
                        readonly: *readonly,
                        propagation: String::new(),
                        mode: String::new(),
                    });
                }
                MountRequest::Tmpfs {
                    destination,
                    options,
                } => {
                    let opts: Vec<&str> = options.iter().map(String::as_str).collect();
                    oci.push(mount(destination, "tmpfs", "tmpfs", &opts));
                    points.push(MountPoint {
                        kind: MountKind::Tmpfs,
                        name: None,
                        source: String::new(),
                        destination: destination.clone(),
                        readonly: options.iter().any(|o| o == "ro"),
                        propagation: String::new(),
                        mode: String::new(),
                    });
                }
            }
        }
        Ok((oci, points, anonymous))
    }

    // ----------------------------------------------------------------- start

    /// Starts a created or exited container.
    pub fn start(&self, id: &str) -> Result<Outcome> {
        let id = self.resolve_id(id)?;
        let lock = self.op_lock(&id);
        let _guard = lock.lock().unwrap_or_else(|p| p.into_inner());
        let started = self.start_locked(&id);
        if started.is_err() {
            // As dockerd does: an auto-remove container whose start failed is
            // removed, so a client waiting for its removal is answered.
            let stopped = self
                .get(&id)
                .is_ok_and(|c| c.config.auto_remove && c.state.status.run().is_none());
            if stopped {
                if let Err(e) = self.remove_stopped_locked(&id, true) {
                    tracing::warn!("removing {id} after its failed start: {e}");
                }
            }
        }
        started
    }

    pub(crate) fn start_locked(&self, id: &str) -> Result<Outcome> {
        let t0 = std::time::Instant::now();
        let c = self.get(id)?;
        match &c.state.status {
            Status::Running(_) | Status::Paused(_) => return Ok(Outcome::Unchanged),
            Status::Created | Status::Exited(_) | Status::Restarting(_) => {}
            other => {
                return Err(Error::conflict(format!(
                    "cannot start container {id}: it is {}",
                    other.name()
                )))
            }
        }
        let dir = self.container_dir(id);
        let rootfs = self.storage.mount_snapshot(id).map_err(|e| match e {
            silo_storage::SnapshotError::Attached { .. } => Error::conflict(e.to_string()),
            e => Error::internal("mounting the container filesystem", e),
        })?;
        let mut spec: silo_oci::Spec = (*c.spec).clone();
        if let Some(p) = spec.process.as_mut() {
            p.user = spec::resolve_user(&rootfs, &c.config.process.user, &c.config.process.groups)?;
        }
        if let Some(r) = spec.root.as_mut() {
            r.path = rootfs.to_string_lossy().into_owned();
        }
        let caps = &c.config.process.capabilities;
        let seccomp = spec::seccomp(
            &c.config.security.seccomp,
            c.config.security.privileged,
            || self.default_seccomp(caps),
        );
        if let Some(l) = spec.linux.as_mut() {
            l.seccomp = seccomp;
        }
        let joins = self.shared_namespaces(&c)?;
        for (t, path) in &joins {
            spec::join(&mut spec, *t, path);
        }
        // Attach network: from here on a failure must detach it again.
        let own_netns = self.attach_network(&c)?;
        if let Some(netns) = &own_netns {
            spec::join(&mut spec, NamespaceType::Network, netns);
        }
        let spawned = self.spawn(&c, &dir, &spec);
        let (pid, monitor_pid) = match spawned {
            Ok(p) => p,
            Err(e) => {
                if own_netns.is_some() {
                    if let Err(t) = crate::teardown::run(self, &c, &[Step::Network], false) {
                        tracing::warn!("after the failed start of {id}: {t}");
                    }
                }
                let _ = self.modify(id, |c| {
                    c.state.start_failed(&e);
                    Ok(())
                });
                return Err(e);
            }
        };
        let run = Run {
            pid,
            monitor_pid,
            started_at: silo_units::now_rfc3339(),
        };
        let (c, ()) = self.modify(id, |c| {
            c.state.started(run.clone())?;
            c.health = crate::health::starting(c);
            Ok(())
        })?;
        tracing::debug!(id, total_ms = t0.elapsed().as_secs_f64() * 1e3, "started");
        self.emit(Scope::Container, Action::Start, id);
        self.watch(id, &run.started_at);
        self.health_watch(&c.id);
        Ok(Outcome::Done)
    }

    /// The namespaces the container joins (its pod's, another container's)
    /// as (type, path) pairs; the containers it joins must be running.
    fn shared_namespaces(&self, c: &Container) -> Result<Vec<(NamespaceType, PathBuf)>> {
        let mut out = Vec::new();
        if let Some(pod) = &c.config.pod {
            out.extend(self.pod_namespaces(pod)?);
        }
        let target_pid = |t: &str, what: &str| -> Result<i32> {
            let other = self.get(t)?;
            match other.state.status.run() {
                Some(r) => Ok(r.pid),
                None => Err(Error::conflict(format!(
                    "cannot join the {what} namespace of container {t}: it is not running"
                ))),
            }
        };
        let proc_ns =
            |pid: i32, t: NamespaceType| PathBuf::from(format!("/proc/{pid}/ns/{}", t.proc_name()));
        // A pod's container may still join another's PID namespace (the
        // pod's pause container, when the pod shares one).
        if let NetworkMode::Container(t) = &c.config.namespaces.network {
            let pid = target_pid(t, "network")?;
            let pinned = self.netns_path(t);
            let path = if silo_isolation::pin::is_pinned(&pinned) {
                pinned
            } else {
                proc_ns(pid, NamespaceType::Network)
            };
            out.push((NamespaceType::Network, path));
        }
        for (t, sharing, what) in [
            (NamespaceType::Ipc, &c.config.namespaces.ipc, "ipc"),
            (NamespaceType::Pid, &c.config.namespaces.pid, "pid"),
            (NamespaceType::Uts, &c.config.namespaces.uts, "uts"),
        ] {
            if let Sharing::Container(other) = sharing {
                out.push((t, proc_ns(target_pid(other, what)?, t)));
            }
        }
        Ok(out)
    }

    /// Attach network: for a container with a network namespace of its own,
    /// pins a new one, lets the network service connect it and writes the
    /// /etc files; returns the pinned namespace. A container on the host's
    /// network gets its /etc files; one that joins a namespace, nothing.
    fn attach_network(&self, c: &Container) -> Result<Option<PathBuf>> {
        let hostname = c.hostname();
        let write_etc = |att: &Attachment| self.write_etc(c, att);
        let names = vec![c.name.clone(), c.id.chars().take(12).collect()];
        if c.config.pod.is_some() {
            return Ok(None);
        }
        match &c.config.namespaces.network {
            NetworkMode::Container(_) => Ok(None),
            NetworkMode::Host => write_etc(&Attachment::default()).map(|()| None),
            mode @ (NetworkMode::Default | NetworkMode::None | NetworkMode::Networks(_)) => {
                let netns = self.netns_path(&c.id);
                // A pin left by a run that ended while we were away goes first.
                let _ = silo_isolation::pin::unpin(&netns);
                silo_isolation::pin::pin(&[(NamespaceType::Network, netns.clone())], None)
                    .map_err(|e| Error::internal("attaching the network", e))?;
                let attached = if *mode == NetworkMode::None {
                    Ok(Attachment::default())
                } else {
                    self.network.attach(&AttachRequest {
                        owner: &c.id,
                        netns: &netns,
                        mode,
                        hostname: &hostname,
                        ports: &c.config.ports,
                        names: &names,
                        dns_servers: &c.config.dns.servers,
                    })
                };
                let done = attached
                    .map_err(|e| Error::internal("attaching the network", std::io::Error::other(e)))
                    .and_then(|mut att| {
                        self.link_hosts(c, &mut att)?;
                        write_etc(&att)
                    });
                match done {
                    Ok(()) => Ok(Some(netns)),
                    Err(e) => {
                        let _ = self.network.detach(&c.id);
                        let _ = silo_isolation::pin::unpin(&netns);
                        Err(e)
                    }
                }
            }
        }
    }

    /// Writes the container's /etc/hostname, hosts and resolv.conf.
    pub(crate) fn write_etc(&self, c: &Container, att: &Attachment) -> Result<()> {
        let extra_hosts = self.extra_hosts(c)?;
        let files = crate::network::EtcFiles {
            hostname: &c.hostname(),
            att,
            extra_hosts: &extra_hosts,
            dns: &c.config.dns,
            own_netns: c.config.namespaces.network != NetworkMode::Host,
        };
        crate::network::write_etc_files(
            &self.container_dir(&c.id),
            &files,
            Path::new("/etc/resolv.conf"),
        )
        .map_err(|e| Error::internal("writing the container's /etc files", e))
    }

    /// `--add-host` entries as /etc/hosts lines; `host-gateway` is the
    /// default network's gateway (the host's address on it), as in Docker.
    fn extra_hosts(&self, c: &Container) -> Result<Vec<(String, Vec<String>)>> {
        c.config
            .extra_hosts
            .iter()
            .map(|(name, addr)| {
                let addr = if addr == "host-gateway" {
                    self.network(silo_network::service::DEFAULT_NETWORK)?
                        .pool
                        .gateway
                        .to_string()
                } else {
                    addr.clone()
                };
                Ok((addr, vec![name.clone()]))
            })
            .collect()
    }

    /// /etc/hosts entries for the container's links: each linked container's
    /// address on a network both joined, under the alias, its name and its
    /// short id.
    fn link_hosts(&self, c: &Container, att: &mut Attachment) -> Result<()> {
        let default = [crate::model::NetworkJoin::default_network()];
        let joins: &[crate::model::NetworkJoin] = match &c.config.namespaces.network {
            NetworkMode::Networks(joins) => joins,
            NetworkMode::Default => &default,
            _ => return Ok(()),
        };
        for l in &c.config.links {
            let target = self.container(&l.container)?;
            let eps = self.endpoints_of(&target.id);
            let shared = eps
                .iter()
                .find(|(n, _)| joins.iter().any(|j| j.network == n.name));
            let Some((_, ep)) = shared else {
                return Err(Error::conflict(format!(
                    "cannot link to container {}: it is not running on a network container {} joins",
                    target.name, c.name
                )));
            };
            let mut names = vec![l.alias.clone()];
            if target.name != l.alias {
                names.push(target.name.clone());
            }
            names.push(target.id.chars().take(12).collect());
            att.hosts.push((ep.ip.to_string(), names));
        }
        Ok(())
    }

    /// Spawn: writes config.json and starts the monitor, which creates and
    /// starts the container and reports the init's pid. Returns (init pid,
    /// monitor pid).
    fn spawn(&self, c: &Container, dir: &Path, spec: &silo_oci::Spec) -> Result<(i32, i32)> {
        let id = &c.id;
        let json = serde_json::to_vec_pretty(spec)
            .map_err(|e| Error::internal("encoding config.json", e))?;
        let cfg = dir.join("config.json");
        std::fs::write(&cfg, json).map_err(io_err(format!("writing {}", cfg.display())))?;
        for f in [monitor::EXIT_FILE, monitor::MONITOR_FILE] {
            let _ = std::fs::remove_file(dir.join(f));
        }
        // A stale runtime record (e.g. from a crash) would block the create.
        self.delete_runtime(id);
        let state_dir = self.ensure_state_link(id)?;
        let args = silo_monitor::Args {
            runtime_root: self.config.exec_root.join("runtime"),
            id: id.clone(),
            bundle: dir.to_path_buf(),
            state_dir,
            tty: c.config.process.terminal,
            stdin: c.config.process.stdin,
            log_max_bytes: c.config.log.max_bytes,
            cri_log: c.config.log.cri_path.clone(),
            log_max_files: c.config.log.max_files,
            no_log: !c.config.log.enabled,
            // Clients attached before start (docker run) must see all output.
            wait_attach: self.waiting_attaches(id),
            detach: true,
        };
        let out = Command::new(&self.config.monitor_binary)
            .args(args.to_args())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .map_err(io_err(format!(
                "running the monitor {}",
                self.config.monitor_binary.display()
            )))?;
        let stdout = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if !out.status.success() {
            let failure = monitor::start_failure(&stdout).unwrap_or_else(|| {
                let stderr = String::from_utf8_lossy(&out.stderr);
                monitor::StartFailure {
                    message: format!("the monitor failed ({}): {}", out.status, stderr.trim()),
                    command: None,
                }
            });
            return Err(start_error(failure));
        }
        let pid = monitor::detached_pid(&stdout).ok_or_else(|| {
            Error::internal(
                "the monitor's answer",
                std::io::Error::other(format!("expected the init pid, got {stdout:?}")),
            )
        })?;
        let monitor_pid = monitor::read_monitor(dir).map_or(0, |m| m.monitor_pid);
        Ok((pid, monitor_pid))
    }

    /// The default seccomp profile for `caps`, compiled once per set.
    fn default_seccomp(&self, caps: &[String]) -> silo_oci::Seccomp {
        let mut cache = self
            .seccomp_profiles
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some((_, p)) = cache.iter().find(|(k, _)| k.as_slice() == caps) {
            return p.clone();
        }
        let p = silo_seccomp::docker_default(caps);
        if cache.len() >= 16 {
            cache.remove(0);
        }
        cache.push((caps.to_vec(), p.clone()));
        p
    }

    // ------------------------------------------------------------ exits

    /// Starts the thread that waits for the current run's exit.json.
    pub(crate) fn watch(&self, id: &str, started_at: &str) {
        let Some(me) = self.me.upgrade() else { return };
        let id = id.to_string();
        let started_at = started_at.to_string();
        let spawned = std::thread::Builder::new()
            .name(format!("watch-{}", &id[..12.min(id.len())]))
            .spawn(move || me.watch_loop(&id, &started_at));
        if let Err(e) = spawned {
            tracing::error!("cannot start the exit watcher: {e}");
        }
    }

    fn watch_loop(&self, id: &str, started_at: &str) {
        let dir = self.container_dir(id);
        let proc_root = PathBuf::from("/proc");
        let monitor_pid = self
            .lock()
            .get(id)
            .and_then(|c| c.state.status.run().map(|r| r.monitor_pid))
            .unwrap_or(0);
        // The monitor exits right after writing exit.json and cleaning up,
        // so a pidfd on it wakes us without polling; without one (no pid
        // recorded) we poll exit.json every 20 ms.
        let pidfd = silo_sys::pidfd::PidFd::open(monitor_pid).ok();
        let mut tick = 0u32;
        loop {
            let monitor_gone = match &pidfd {
                Some(fd) => fd.wait(Some(Duration::from_millis(250))),
                None => {
                    std::thread::sleep(Duration::from_millis(20));
                    false
                }
            };
            tick = tick.wrapping_add(1);
            if monitor_gone {
                tracing::debug!(id, monitor_pid, "monitor exited");
                reap(monitor_pid);
            }
            let current = {
                let map = self.lock();
                map.get(id)
                    .and_then(|c| c.state.status.run().cloned())
                    .filter(|r| r.started_at == started_at)
            };
            let Some(run) = current else { return };
            if let Some(exit) = monitor::read_exit(&dir) {
                if !monitor_gone {
                    // Give the monitor a moment to finish its cleanup
                    // (cgroup removal) so a following `rm` finds nothing.
                    if let Some(fd) = &pidfd {
                        fd.wait(Some(Duration::from_millis(500)));
                    }
                }
                self.on_exit(id, started_at, exit, None);
                return;
            }
            let check = monitor_gone || (pidfd.is_none() && tick.is_multiple_of(25));
            if check
                && run.monitor_pid > 0
                && !crate::recover::monitor_alive(&proc_root, run.monitor_pid, Some(id))
            {
                match monitor::read_exit(&dir) {
                    Some(exit) => self.on_exit(id, started_at, exit, None),
                    None => self.on_monitor_lost(id, started_at),
                }
                return;
            }
        }
    }

    /// A monitor died without writing exit.json: clean up after it and
    /// record exit code 255.
    pub(crate) fn on_monitor_lost(&self, id: &str, started_at: &str) {
        self.delete_runtime(id);
        self.on_exit(
            id,
            started_at,
            ExitInfo {
                exit_code: 255,
                oom_killed: false,
                finished_at: silo_units::now_rfc3339(),
            },
            Some("monitor lost".into()),
        );
    }

    /// Deletes the compute service's record of the container, killing
    /// whatever of it still runs. Nothing to delete is fine.
    pub(crate) fn delete_runtime(&self, id: &str) {
        if let Ok(host) = self.compute_host() {
            if let Ok(sys) = silo_compute::open(&host, id) {
                let _ = sys.delete(true);
            }
        }
    }

    /// Records the exit of the run that began at `started_at`, detaches its
    /// network, emits oom/die, and applies auto-remove and the restart policy.
    pub(crate) fn on_exit(
        &self,
        id: &str,
        started_at: &str,
        exit: ExitInfo,
        error: Option<String>,
    ) {
        // Read before the state change: `restart` stops waiting for it and
        // then forgets the container.
        let by_hand = self
            .restarting_by_hand
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(id);
        let finished = if exit.finished_at.is_empty() {
            silo_units::now_rfc3339()
        } else {
            exit.finished_at.clone()
        };
        let record = Exit {
            code: exit.exit_code,
            oom_killed: exit.oom_killed,
            started_at: started_at.to_string(),
            finished_at: finished.clone(),
        };
        // Detach first, so whoever waits for the exit finds the network
        // released. While the record says this run is running no other run
        // can start, so the network released is this run's.
        let current = self.get(id).ok().filter(|c| {
            c.state
                .status
                .run()
                .is_some_and(|r| r.started_at == started_at)
        });
        let Some(current) = current else { return };
        if let Err(e) = crate::teardown::run(self, &current, &[Step::Network], false) {
            tracing::warn!("after the exit of {id}: {e}");
        }
        // Output the monitor could not log is said where users look: the
        // daemon log and the container's State.Error.
        let lost = monitor::read_log_errors(&self.container_dir(id)).map(|e| {
            let msg = format!(
                "{} bytes of the container's output were not logged: {}",
                e.dropped_bytes, e.last_error
            );
            tracing::warn!("container {id}: {msg}");
            msg
        });
        let error = error.or(lost);
        let updated = self.modify(id, |c| {
            c.state.exited(record.clone())?;
            c.state.error = error.clone().unwrap_or_default();
            if let Some(h) = c.health.as_mut() {
                crate::health::stopped(h);
            }
            c.exit_seq += 1;
            Ok(())
        });
        let Ok((c, ())) = updated else { return };
        tracing::debug!(id, code = exit.exit_code, "exit recorded");
        if exit.oom_killed {
            self.emit(Scope::Container, Action::Oom, id);
        }
        self.emit(
            Scope::Container,
            Action::Die {
                exit_code: exit.exit_code,
            },
            id,
        );
        if c.config.auto_remove && !by_hand {
            match self.auto_remove(id, &finished) {
                Ok(()) => tracing::debug!(id, "auto-removed"),
                Err(e) => tracing::warn!("auto-remove of {id}: {e}"),
            }
            return;
        }
        if should_restart(&c) && self.modify(id, |c| c.state.restarting()).is_ok() {
            self.schedule_restart(id, c.restart_count);
        }
    }

    /// Starts the container again after the policy's delay, unless it was
    /// stopped or removed meanwhile.
    pub(crate) fn schedule_restart(&self, id: &str, restart_count: u32) {
        let delay = Duration::from_millis(100u64 << restart_count.min(10));
        let Some(me) = self.me.upgrade() else { return };
        let id = id.to_string();
        let _ = std::thread::Builder::new()
            .name("restart".into())
            .spawn(move || {
                std::thread::sleep(delay);
                let lock = me.op_lock(&id);
                let _g = lock.lock().unwrap_or_else(|p| p.into_inner());
                let still = me
                    .get(&id)
                    .is_ok_and(|c| matches!(c.state.status, Status::Restarting(_)));
                if !still {
                    return;
                }
                let _ = me.modify(&id, |c| {
                    c.restart_count += 1;
                    Ok(())
                });
                if let Err(e) = me.start_locked(&id) {
                    tracing::warn!("restart of {id}: {e}");
                    let _ = me.modify(&id, |c| {
                        c.state.start_failed(&e);
                        c.state.restart_cancelled()
                    });
                }
            });
    }
}

/// Whether the restart policy starts `c` again after the exit it just had.
/// The delay before a restart is 100 ms doubling per restart (capped at
/// ~100 s).
pub(crate) fn should_restart(c: &Container) -> bool {
    if c.manual_stop {
        return false;
    }
    match c.config.restart {
        RestartPolicy::Always | RestartPolicy::UnlessStopped => true,
        RestartPolicy::OnFailure { max_retries } => {
            c.state.last_exit().is_some_and(|e| e.code != 0)
                && (max_retries == 0 || c.restart_count < max_retries)
        }
        RestartPolicy::No => false,
    }
}

/// The conflict of a name another container has.
pub(crate) fn name_taken(name: &str, owner: &str) -> Error {
    Error::conflict(format!(
        "Conflict. The container name \"/{name}\" is already in use by container \"{owner}\". You have to remove (or rename) that container to be able to reuse that name."
    ))
}

/// A start that failed: the command's fault (it is not there or cannot
/// run) is the caller's; anything else is silo's.
fn start_error(f: monitor::StartFailure) -> Error {
    let msg = format!("failed to create the container: {}", f.message);
    match f.command {
        Some(c) => Error::CommandFailed {
            code: c.exit_code(),
            message: msg,
        },
        None => Error::internal("starting the container", std::io::Error::other(msg)),
    }
}

/// Reaps the monitor if it became our child (silod is a subreaper, and the
/// detached monitor is then reparented to it); harmless otherwise.
fn reap(pid: i32) {
    if pid <= 0 {
        return;
    }
    let mut status = 0;
    // SAFETY: waitpid on one pid with WNOHANG writes into a live i32.
    unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exited(code: i64, policy: RestartPolicy, restarts: u32) -> Container {
        let mut c = Container::for_test("c1", "c1");
        c.config.restart = policy;
        c.restart_count = restarts;
        c.state.status = Status::Exited(Exit {
            code,
            oom_killed: false,
            started_at: String::new(),
            finished_at: String::new(),
        });
        c
    }

    #[test]
    fn restart_policies() {
        use RestartPolicy::*;
        assert!(!should_restart(&exited(1, No, 0)));
        assert!(should_restart(&exited(0, Always, 5)));
        assert!(should_restart(&exited(0, UnlessStopped, 0)));
        assert!(!should_restart(&exited(0, OnFailure { max_retries: 0 }, 0)));
        assert!(should_restart(&exited(2, OnFailure { max_retries: 0 }, 99)));
        assert!(should_restart(&exited(2, OnFailure { max_retries: 3 }, 2)));
        assert!(!should_restart(&exited(2, OnFailure { max_retries: 3 }, 3)));
        let mut c = exited(1, Always, 0);
        c.manual_stop = true;
        assert!(!should_restart(&c), "a stop by hand holds");
    }

    #[test]
    fn start_errors_blame_the_command_or_silo() {
        let e = start_error(monitor::StartFailure {
            message: "exec: \"nope\": executable file not found in $PATH".into(),
            command: Some(monitor::CommandError::NotFound),
        });
        assert!(matches!(e, Error::CommandFailed { code: 127, .. }), "{e}");
        // A message that mentions "not found" is not the command's fault.
        let e = start_error(monitor::StartFailure {
            message: "cgroup /x: not found".into(),
            command: None,
        });
        assert!(matches!(e, Error::Internal { .. }), "{e}");
    }
}
