//! The job layer: one container's cgroup across every hierarchy, treated like a Windows Job Object
//! (a group with limits, accounting, freeze/thaw and kill-on-close).

mod bpf;
mod devices;
mod enter;
mod fs;
mod stats;
mod v1;
mod v2;

pub use enter::Entered;

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub use devices::DevicesError;
pub use fs::{CgroupFs, DetectError, Layout};
pub use stats::{BlkioStats, CpuStats, MemoryStats, PidsStats, Stats, StatsError};

/// A cgroupsPath that cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PathError {
    #[error("cgroups path {0:?} is empty")]
    Empty(String),
    #[error("cgroups path {0:?} contains a NUL byte")]
    Nul(String),
    #[error("cgroups path {path:?} has a bad component {component:?} (empty, \".\" or \"..\")")]
    BadComponent { path: String, component: String },
}

#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    #[error(transparent)]
    InvalidPath(#[from] PathError),
    #[error("creating cgroup dir {path}: {source}")]
    Mkdir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("copying {file} from the parent into {path}: {source}")]
    CopyCpuset {
        path: PathBuf,
        file: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("enabling controller {controller} in {path}: {source}")]
    EnableController {
        path: PathBuf,
        controller: String,
        #[source]
        source: io::Error,
    },
    #[error("the cgroup filesystem has no hierarchy to create {0:?} in")]
    NoHierarchy(String),
}

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(transparent)]
    InvalidPath(#[from] PathError),
    #[error("cgroup dir {path} does not exist")]
    Missing { path: PathBuf },
    #[error("the cgroup filesystem has no hierarchy to open {0:?} in")]
    NoHierarchy(String),
}

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("{field}: {reason}")]
    Invalid { field: String, reason: String },
    #[error("{field}: not supported on this host: {reason}")]
    Unsupported { field: String, reason: String },
    #[error("{field}: {path} does not exist on this host")]
    MissingFile { field: String, path: PathBuf },
    #[error("{field}: writing {value:?} to {path}: {source}")]
    Write {
        field: String,
        path: PathBuf,
        value: String,
        #[source]
        source: io::Error,
    },
    #[error("{field}: reading {path}: {source}")]
    Read {
        field: String,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum AddError {
    #[error("adding pid {pid} to {path}: {source}")]
    Write {
        pid: i32,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}: cannot parse {content:?}")]
    Parse { path: PathBuf, content: String },
    #[error("no hierarchy of group {0:?} can answer this")]
    NoHierarchy(String),
}

#[derive(Debug, thiserror::Error)]
pub enum FreezeError {
    #[error("group {0:?} has no freezer (no v1 freezer controller and no cgroup2 dir)")]
    NoFreezer(String),
    #[error("writing {value:?} to {path}: {source}")]
    Write {
        path: PathBuf,
        value: &'static str,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error("{path} did not reach {wanted} within {waited:?}")]
    Timeout {
        path: PathBuf,
        wanted: &'static str,
        waited: Duration,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum KillError {
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error("kill({pid}, {sig}): {source}")]
    Kill {
        pid: i32,
        sig: i32,
        #[source]
        source: io::Error,
    },
}

/// Every problem met while destroying a group; destroy carries on past each one.
#[derive(Debug, thiserror::Error)]
#[error("destroying cgroup {path:?}: {}", .errors.join("; "))]
pub struct DestroyError {
    pub path: String,
    pub errors: Vec<String>,
}

/// One container's group across all hierarchies (the Job Object).
#[derive(Debug, Clone)]
pub struct Job {
    path: String,
    layout: Layout,
    /// v1 controller name (or `name=systemd`) -> this group's dir in that hierarchy.
    v1: BTreeMap<String, PathBuf>,
    /// This group's dir in the cgroup2 hierarchy (resources on V2, membership only on hybrid).
    unified: Option<PathBuf>,
}

/// Controllers enabled down the path on a pure v2 host.
const V2_CONTROLLERS: &[&str] = &["cpu", "memory", "pids", "io", "cpuset", "hugetlb"];

/// Splits and checks an OCI cgroupsPath; returns its components.
pub fn validate_path(path: &str) -> Result<Vec<&str>, PathError> {
    if path.contains('\0') {
        return Err(PathError::Nul(path.to_string()));
    }
    let rel = path.strip_prefix('/').unwrap_or(path);
    if rel.is_empty() {
        return Err(PathError::Empty(path.to_string()));
    }
    let comps: Vec<&str> = rel.split('/').collect();
    for c in &comps {
        if c.is_empty() || *c == "." || *c == ".." {
            return Err(PathError::BadComponent {
                path: path.to_string(),
                component: c.to_string(),
            });
        }
    }
    Ok(comps)
}

/// One hierarchy to create the group in.
struct Hierarchy {
    root: PathBuf,
    names: Vec<String>,
    optional: bool,
    cpuset: bool,
    enable_v2: bool,
}

fn hierarchies(fs: &CgroupFs) -> Vec<Hierarchy> {
    let mut by_root: BTreeMap<PathBuf, Vec<String>> = BTreeMap::new();
    for (name, root) in fs.controllers() {
        by_root.entry(root.clone()).or_default().push(name.clone());
    }
    let mut out: Vec<Hierarchy> = by_root
        .into_iter()
        .map(|(root, names)| Hierarchy {
            optional: names.iter().all(|n| n.starts_with("name=")),
            cpuset: names.iter().any(|n| n == "cpuset"),
            enable_v2: false,
            root,
            names,
        })
        .collect();
    if let Some(u) = fs.unified() {
        out.push(Hierarchy {
            root: u.to_path_buf(),
            names: Vec::new(),
            optional: false,
            cpuset: false,
            enable_v2: fs.layout() == Layout::V2,
        });
    }
    out
}

fn rollback(created: &[PathBuf]) {
    for dir in created.iter().rev() {
        // Best effort: the error being returned is the one that matters.
        let _ = std::fs::remove_dir(dir);
    }
}

/// Writes `value` to an existing cgroup file (never creates it).
pub(crate) fn write_file(path: &Path, value: &str) -> io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)?;
    f.write_all(value.as_bytes())
}

pub(crate) fn read_trimmed(path: &Path) -> io::Result<String> {
    Ok(std::fs::read_to_string(path)?.trim().to_string())
}

/// Writes a resource value, naming the OCI field on failure.
pub(crate) fn write_field(field: &str, path: &Path, value: &str) -> Result<(), ApplyError> {
    write_file(path, value).map_err(|source| {
        if source.kind() == io::ErrorKind::NotFound {
            ApplyError::MissingFile {
                field: field.to_string(),
                path: path.to_path_buf(),
            }
        } else {
            ApplyError::Write {
                field: field.to_string(),
                path: path.to_path_buf(),
                value: value.to_string(),
                source,
            }
        }
    })
}

fn enable_v2_controllers(dir: &Path) -> Result<(), CreateError> {
    let available = match std::fs::read_to_string(dir.join("cgroup.controllers")) {
        Ok(s) => s,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(CreateError::EnableController {
                path: dir.join("cgroup.controllers"),
                controller: String::new(),
                source,
            })
        }
    };
    let control = dir.join("cgroup.subtree_control");
    let enabled = std::fs::read_to_string(&control).unwrap_or_default();
    let available: Vec<&str> = available.split_whitespace().collect();
    let enabled: Vec<&str> = enabled.split_whitespace().collect();
    for c in V2_CONTROLLERS {
        if available.contains(c) && !enabled.contains(c) {
            write_file(&control, &format!("+{c}")).map_err(|source| {
                CreateError::EnableController {
                    path: control.clone(),
                    controller: c.to_string(),
                    source,
                }
            })?;
        }
    }
    Ok(())
}

fn copy_cpuset(dir: &Path, parent: &Path) -> Result<(), CreateError> {
    for file in ["cpuset.cpus", "cpuset.mems"] {
        let map = |source| CreateError::CopyCpuset {
            path: dir.to_path_buf(),
            file,
            source,
        };
        let own = match read_trimmed(&dir.join(file)) {
            Ok(s) => s,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(map(e)),
        };
        if own.is_empty() {
            let value = read_trimmed(&parent.join(file)).map_err(map)?;
            write_file(&dir.join(file), &value).map_err(map)?;
        }
    }
    Ok(())
}

/// Creates the path under one hierarchy root; appends every dir it made to `created`.
fn create_in(h: &Hierarchy, comps: &[&str], created: &mut Vec<PathBuf>) -> Result<(), CreateError> {
    let mut cur = h.root.clone();
    for comp in comps {
        let parent = cur.clone();
        cur.push(comp);
        if h.enable_v2 {
            enable_v2_controllers(&parent)?;
        }
        match std::fs::create_dir(&cur) {
            Ok(()) => created.push(cur.clone()),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && cur.is_dir() => {}
            Err(source) => {
                return Err(CreateError::Mkdir {
                    path: cur.clone(),
                    source,
                })
            }
        }
        if h.cpuset {
            copy_cpuset(&cur, &parent)?;
        }
    }
    Ok(())
}

impl Job {
    /// Creates (mkdir -p) the group in every hierarchy. On failure every dir made here is removed.
    pub fn create(fs: &CgroupFs, path: &str) -> Result<Job, CreateError> {
        let comps = validate_path(path)?;
        let hs = hierarchies(fs);
        if hs.is_empty() {
            return Err(CreateError::NoHierarchy(path.to_string()));
        }
        let rel = comps.join("/");
        let mut created = Vec::new();
        let mut job = Job {
            path: rel.clone(),
            layout: fs.layout(),
            v1: BTreeMap::new(),
            unified: None,
        };
        for h in &hs {
            let mut mine = Vec::new();
            match create_in(h, &comps, &mut mine) {
                Ok(()) => {
                    created.extend(mine);
                    let dir = h.root.join(&rel);
                    if h.names.is_empty() {
                        job.unified = Some(dir);
                    } else {
                        for n in &h.names {
                            job.v1.insert(n.clone(), dir.clone());
                        }
                    }
                }
                Err(_) if h.optional => rollback(&mine),
                Err(e) => {
                    rollback(&mine);
                    rollback(&created);
                    return Err(e);
                }
            }
        }
        Ok(job)
    }

    /// Opens a group that already exists in every (non-optional) hierarchy.
    pub fn open(fs: &CgroupFs, path: &str) -> Result<Job, OpenError> {
        let comps = validate_path(path)?;
        let hs = hierarchies(fs);
        if hs.is_empty() {
            return Err(OpenError::NoHierarchy(path.to_string()));
        }
        let rel = comps.join("/");
        let mut job = Job {
            path: rel.clone(),
            layout: fs.layout(),
            v1: BTreeMap::new(),
            unified: None,
        };
        for h in &hs {
            let dir = h.root.join(&rel);
            if !dir.is_dir() {
                if h.optional {
                    continue;
                }
                return Err(OpenError::Missing { path: dir });
            }
            if h.names.is_empty() {
                job.unified = Some(dir);
            } else {
                for n in &h.names {
                    job.v1.insert(n.clone(), dir.clone());
                }
            }
        }
        Ok(job)
    }

    /// The normalized path (no leading slash), relative to each hierarchy root.
    pub fn path(&self) -> &str {
        &self.path
    }

    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// This group's dir for one v1 controller, if that controller is mounted.
    pub fn controller_dir(&self, controller: &str) -> Option<&Path> {
        self.v1.get(controller).map(PathBuf::as_path)
    }

    /// This group's dir in the cgroup2 hierarchy, if any.
    pub fn unified_dir(&self) -> Option<&Path> {
        self.unified.as_deref()
    }

    /// Every distinct dir of this group (v1 hierarchies first, then cgroup2).
    pub fn dirs(&self) -> Vec<PathBuf> {
        let mut out: Vec<PathBuf> = Vec::new();
        for d in self.v1.values() {
            if !out.contains(d) {
                out.push(d.clone());
            }
        }
        if let Some(u) = &self.unified {
            out.push(u.clone());
        }
        out
    }

    /// The dir that holds resource files on a pure v2 host.
    fn v2_dir(&self) -> Option<&Path> {
        match self.layout {
            Layout::V2 => self.unified.as_deref(),
            _ => None,
        }
    }

    /// Applies OCI resources; returns warnings for settings this host cannot honour.
    pub fn apply(&self, r: &silo_oci::Resources) -> Result<Vec<String>, ApplyError> {
        let mut warnings = Vec::new();
        match self.v2_dir() {
            Some(dir) => v2::apply(dir, r, &mut warnings)?,
            None => {
                v1::apply(&self.v1, r, &mut warnings)?;
                if !r.unified.is_empty() {
                    match &self.unified {
                        Some(dir) => v2::apply_unified(dir, &r.unified)?,
                        None => {
                            return Err(ApplyError::Unsupported {
                                field: "linux.resources.unified".into(),
                                reason: "the host has no cgroup2 hierarchy".into(),
                            })
                        }
                    }
                }
            }
        }
        Ok(warnings)
    }

    /// Applies a device allow/deny list (v1 devices controller, or a BPF program on v2).
    pub fn apply_devices(&self, rules: &[silo_oci::DeviceCgroup]) -> Result<(), DevicesError> {
        match self.v2_dir() {
            Some(dir) => devices::apply_v2(dir, rules),
            None => match self.v1.get("devices") {
                Some(dir) => devices::apply_v1(dir, rules),
                None => {
                    if rules.is_empty() {
                        Ok(())
                    } else {
                        Err(DevicesError::NoController)
                    }
                }
            },
        }
    }

    /// The `cgroup.procs` file of every hierarchy; writing a pid (or "0" for self) joins it.
    pub fn procs_files(&self) -> Vec<PathBuf> {
        self.dirs()
            .into_iter()
            .map(|d| d.join("cgroup.procs"))
            .collect()
    }

    /// Moves `pid` into the group in every hierarchy.
    pub fn add_pid(&self, pid: i32) -> Result<(), AddError> {
        for f in self.procs_files() {
            write_file(&f, &pid.to_string()).map_err(|source| AddError::Write {
                pid,
                path: f.clone(),
                source,
            })?;
        }
        Ok(())
    }

    /// The dir that answers membership questions: pids, else memory, else cgroup2.
    fn members_dir(&self) -> Option<&Path> {
        if let Some(d) = self.v2_dir() {
            return Some(d);
        }
        self.v1
            .get("pids")
            .or_else(|| self.v1.get("memory"))
            .map(PathBuf::as_path)
            .or(self.unified.as_deref())
            .or_else(|| self.v1.values().next().map(PathBuf::as_path))
    }

    /// Member processes, sorted and deduplicated.
    pub fn pids(&self) -> Result<Vec<i32>, ReadError> {
        let dir = self
            .members_dir()
            .ok_or_else(|| ReadError::NoHierarchy(self.path.clone()))?;
        read_procs(&dir.join("cgroup.procs"))
    }

    /// Members in any hierarchy, child groups included (used when killing, since a pid may
    /// have joined only some hierarchies, or a sub-group).
    fn all_pids(&self) -> Result<Vec<i32>, ReadError> {
        let mut out = Vec::new();
        for d in self.dirs() {
            tree_pids(&d, &mut out)?;
        }
        out.sort_unstable();
        out.dedup();
        Ok(out)
    }

    /// Which freezer this group uses: `Ok(true, dir)` for v1 freezer, `(false, dir)` for cgroup2.
    fn freezer(&self) -> Result<(bool, &Path), FreezeError> {
        if let Some(d) = self.v2_dir() {
            return Ok((false, d));
        }
        if let Some(d) = self.v1.get("freezer") {
            return Ok((true, d));
        }
        match &self.unified {
            Some(d) if d.join("cgroup.freeze").exists() => Ok((false, d)),
            _ => Err(FreezeError::NoFreezer(self.path.clone())),
        }
    }

    /// Freezes every member and waits (about 2 s at most) until the kernel reports it frozen.
    pub fn freeze(&self) -> Result<(), FreezeError> {
        let (v1, dir) = self.freezer()?;
        let res = if v1 {
            let state = dir.join("freezer.state");
            poll_until(Duration::from_secs(2), || {
                // Re-writing FROZEN nudges tasks that were forking while we froze.
                write_file(&state, "FROZEN").map_err(|source| FreezeError::Write {
                    path: state.clone(),
                    value: "FROZEN",
                    source,
                })?;
                Ok(read_state(&state)? == "FROZEN")
            })
            .map_err(|e| timeout_path(e, &state, "FROZEN"))
        } else {
            let freeze = dir.join("cgroup.freeze");
            write_file(&freeze, "1").map_err(|source| FreezeError::Write {
                path: freeze.clone(),
                value: "1",
                source,
            })?;
            let events = dir.join("cgroup.events");
            poll_until(Duration::from_secs(2), || Ok(events_frozen(&events)?))
                .map_err(|e| timeout_path(e, &events, "frozen 1"))
        };
        if res.is_err() {
            // Do not leave a half-frozen group behind.
            let _ = self.thaw();
        }
        res
    }

    /// Thaws the group.
    pub fn thaw(&self) -> Result<(), FreezeError> {
        let (v1, dir) = self.freezer()?;
        if v1 {
            let state = dir.join("freezer.state");
            poll_until(Duration::from_secs(2), || {
                write_file(&state, "THAWED").map_err(|source| FreezeError::Write {
                    path: state.clone(),
                    value: "THAWED",
                    source,
                })?;
                Ok(read_state(&state)? == "THAWED")
            })
            .map_err(|e| timeout_path(e, &state, "THAWED"))
        } else {
            let freeze = dir.join("cgroup.freeze");
            write_file(&freeze, "0").map_err(|source| FreezeError::Write {
                path: freeze.clone(),
                value: "0",
                source,
            })?;
            let events = dir.join("cgroup.events");
            poll_until(Duration::from_secs(2), || Ok(!events_frozen(&events)?))
                .map_err(|e| timeout_path(e, &events, "frozen 0"))
        }
    }

    /// Whether the group is (fully) frozen.
    pub fn is_frozen(&self) -> Result<bool, ReadError> {
        let (v1, dir) = self
            .freezer()
            .map_err(|_| ReadError::NoHierarchy(self.path.clone()))?;
        if v1 {
            Ok(read_state(&dir.join("freezer.state"))? == "FROZEN")
        } else {
            events_frozen(&dir.join("cgroup.events"))
        }
    }

    /// Sends `sig` to every member, child groups included. Processes already gone are skipped.
    pub fn signal_all(&self, sig: i32) -> Result<(), KillError> {
        for pid in self.all_pids()? {
            send_signal(pid, sig)?;
        }
        Ok(())
    }

    /// Kill-on-close: kills every member, waits for them to go, removes the leaf dir everywhere.
    pub fn destroy(&self) -> Result<(), DestroyError> {
        let mut errors = Vec::new();
        let dirs: Vec<PathBuf> = self.dirs().into_iter().filter(|d| d.exists()).collect();
        if dirs.is_empty() {
            return Ok(());
        }
        // One walk first: an empty job (the common case after the init
        // exited) needs no signals, no thaw and no waiting.
        let occupied = !matches!(self.all_pids(), Ok(p) if p.is_empty());
        if occupied {
            self.kill_members(&dirs, &mut errors);
        }
        for d in &dirs {
            if let Err(e) = remove_cgroup_dir(d) {
                errors.push(format!("removing {}: {e}", d.display()));
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(DestroyError {
                path: self.path.clone(),
                errors,
            })
        }
    }

    /// SIGKILL every member (thawing a frozen job so they can die) and wait,
    /// bounded, until none is left.
    fn kill_members(&self, dirs: &[PathBuf], errors: &mut Vec<String>) {
        for d in dirs {
            let kill = d.join("cgroup.kill");
            if kill.exists() {
                if let Err(e) = write_file(&kill, "1") {
                    errors.push(format!("writing 1 to {}: {e}", kill.display()));
                }
            }
        }
        if let Err(e) = self.signal_all(libc::SIGKILL) {
            errors.push(e.to_string());
        }
        // Frozen tasks cannot act on SIGKILL until thawed.
        if matches!(self.is_frozen(), Ok(true)) {
            if let Err(e) = self.thaw() {
                errors.push(e.to_string());
            }
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match self.all_pids() {
                Ok(p) if p.is_empty() => break,
                Ok(p) => {
                    if Instant::now() >= deadline {
                        errors.push(format!("processes {p:?} still alive after 5s"));
                        break;
                    }
                    for pid in p {
                        let _ = send_signal(pid, libc::SIGKILL);
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => {
                    errors.push(e.to_string());
                    break;
                }
            }
        }
    }

    /// Accounting: CPU time, memory and its peak, pids, block IO.
    pub fn stats(&self) -> Result<Stats, StatsError> {
        match self.v2_dir() {
            Some(dir) => stats::read_v2(dir),
            None => stats::read_v1(&self.v1),
        }
    }
}

/// rmdir of a cgroup dir (and any child groups below it); a missing dir is fine.
/// Retries briefly on EBUSY, which the kernel returns while the last tasks are exiting.
fn remove_cgroup_dir(dir: &Path) -> io::Result<()> {
    // The common case: a leaf with no children goes in one rmdir.
    match std::fs::remove_dir(dir) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(_) => {}
    }
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                remove_cgroup_dir(&e.path())?;
            }
        }
    }
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => return Err(e),
        }
    }
}

fn send_signal(pid: i32, sig: i32) -> Result<(), KillError> {
    if pid <= 0 {
        return Ok(());
    }
    // SAFETY: kill(2) takes plain integers and touches no memory of ours.
    let rc = unsafe { libc::kill(pid, sig) };
    if rc != 0 {
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::ESRCH) {
            return Err(KillError::Kill {
                pid,
                sig,
                source: err,
            });
        }
    }
    Ok(())
}

/// Appends the members of `dir` and of every group below it; a vanished dir adds nothing.
fn tree_pids(dir: &Path, out: &mut Vec<i32>) -> Result<(), ReadError> {
    match read_procs(&dir.join("cgroup.procs")) {
        Ok(p) => out.extend(p),
        Err(ReadError::Read { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
            return Ok(())
        }
        Err(e) => return Err(e),
    }
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                tree_pids(&e.path(), out)?;
            }
        }
    }
    Ok(())
}

fn read_procs(path: &Path) -> Result<Vec<i32>, ReadError> {
    let text = std::fs::read_to_string(path).map_err(|source| ReadError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let mut out = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        out.push(line.parse::<i32>().map_err(|_| ReadError::Parse {
            path: path.to_path_buf(),
            content: line.to_string(),
        })?);
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

fn read_state(path: &Path) -> Result<String, ReadError> {
    read_trimmed(path).map_err(|source| ReadError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn events_frozen(path: &Path) -> Result<bool, ReadError> {
    let text = read_state(path)?;
    for line in text.lines() {
        if let Some(v) = line.strip_prefix("frozen ") {
            return Ok(v.trim() == "1");
        }
    }
    Err(ReadError::Parse {
        path: path.to_path_buf(),
        content: text,
    })
}

/// Internal marker for a poll that ran out of time.
enum PollError {
    Timeout(Duration),
    Failed(FreezeError),
}

fn poll_until(
    limit: Duration,
    mut check: impl FnMut() -> Result<bool, FreezeError>,
) -> Result<(), PollError> {
    let start = Instant::now();
    let mut delay = Duration::from_millis(1);
    loop {
        if check().map_err(PollError::Failed)? {
            return Ok(());
        }
        if start.elapsed() >= limit {
            return Err(PollError::Timeout(start.elapsed()));
        }
        std::thread::sleep(delay);
        delay = (delay * 2).min(Duration::from_millis(50));
    }
}

fn timeout_path(e: PollError, path: &Path, wanted: &'static str) -> FreezeError {
    match e {
        PollError::Failed(f) => f,
        PollError::Timeout(waited) => FreezeError::Timeout {
            path: path.to_path_buf(),
            wanted,
            waited,
        },
    }
}

#[cfg(test)]
mod tests;
