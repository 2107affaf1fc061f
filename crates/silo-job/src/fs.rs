//! Finding the cgroup hierarchies: which controllers are mounted where, and whether the host is v1, v2 or hybrid.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Which cgroup versions a host exposes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Only per-controller v1 hierarchies.
    V1,
    /// One unified cgroup2 hierarchy holding every controller.
    V2,
    /// v1 controller hierarchies plus a cgroup2 mount used for membership only.
    Hybrid,
}

/// Failure to work out where the cgroup hierarchies are.
#[derive(Debug, thiserror::Error)]
pub enum DetectError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("mountinfo line {line_no} is malformed: {line:?}")]
    Malformed { line_no: usize, line: String },
    #[error("no cgroup or cgroup2 filesystem is mounted")]
    NoCgroupMounts,
}

/// Controllers a v1 `cgroup` mount can carry; other mount options (rw, nosuid, ...) are skipped.
const V1_CONTROLLERS: &[&str] = &[
    "cpu",
    "cpuacct",
    "cpuset",
    "memory",
    "devices",
    "freezer",
    "net_cls",
    "net_prio",
    "blkio",
    "perf_event",
    "hugetlb",
    "pids",
    "rdma",
    "misc",
];

/// Where the hierarchies are mounted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupFs {
    layout: Layout,
    controllers: BTreeMap<String, PathBuf>,
    unified: Option<PathBuf>,
}

impl CgroupFs {
    /// Reads `/proc/self/mountinfo` and builds the map from it.
    pub fn detect() -> Result<CgroupFs, DetectError> {
        Self::detect_from(Path::new("/proc/self/mountinfo"))
    }

    /// Like [`CgroupFs::detect`] with an explicit mountinfo path.
    pub fn detect_from(mountinfo: &Path) -> Result<CgroupFs, DetectError> {
        let text = std::fs::read_to_string(mountinfo).map_err(|source| DetectError::Read {
            path: mountinfo.to_path_buf(),
            source,
        })?;
        Self::from_mountinfo(&text)
    }

    /// Parses the text of a mountinfo file. The first mount of each controller wins.
    pub fn from_mountinfo(text: &str) -> Result<CgroupFs, DetectError> {
        let mut controllers = BTreeMap::new();
        let mut unified = None;
        for (idx, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let malformed = || DetectError::Malformed {
                line_no: idx + 1,
                line: line.to_string(),
            };
            let (pre, post) = line.split_once(" - ").ok_or_else(malformed)?;
            if !post.starts_with("cgroup") {
                // Most lines on a busy host are overlay mounts: skip them cheaply.
                continue;
            }
            let pre: Vec<&str> = pre.split(' ').collect();
            let post: Vec<&str> = post.split(' ').collect();
            if pre.len() < 6 || post.len() < 3 {
                return Err(malformed());
            }
            let mount_point = PathBuf::from(unescape_mountinfo(pre[4]));
            match post[0] {
                "cgroup2" if unified.is_none() => unified = Some(mount_point),
                "cgroup" => {
                    for opt in post[2].split(',') {
                        let is_name = opt.starts_with("name=");
                        if is_name || V1_CONTROLLERS.contains(&opt) {
                            controllers
                                .entry(opt.to_string())
                                .or_insert_with(|| mount_point.clone());
                        }
                    }
                }
                _ => {}
            }
        }
        let layout = match (controllers.is_empty(), unified.is_some()) {
            (true, true) => Layout::V2,
            (false, true) => Layout::Hybrid,
            (false, false) => Layout::V1,
            (true, false) => return Err(DetectError::NoCgroupMounts),
        };
        Ok(CgroupFs {
            layout,
            controllers,
            unified,
        })
    }

    /// A pure cgroup2 host whose hierarchy is at `root`.
    pub fn v2(root: PathBuf) -> CgroupFs {
        CgroupFs {
            layout: Layout::V2,
            controllers: BTreeMap::new(),
            unified: Some(root),
        }
    }

    /// A v1 host (`unified` = None) or a hybrid one (`unified` = the cgroup2 mount).
    /// `controllers` maps each controller name (or `name=systemd`) to its mount dir.
    pub fn v1(controllers: BTreeMap<String, PathBuf>, unified: Option<PathBuf>) -> CgroupFs {
        let layout = if unified.is_some() {
            Layout::Hybrid
        } else {
            Layout::V1
        };
        CgroupFs {
            layout,
            controllers,
            unified,
        }
    }

    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// The v1 controller map (controller name -> mount dir).
    pub fn controllers(&self) -> &BTreeMap<String, PathBuf> {
        &self.controllers
    }

    /// The cgroup2 mount, if any.
    pub fn unified(&self) -> Option<&Path> {
        self.unified.as_deref()
    }
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo` octal.
fn unescape_mountinfo(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 3 < bytes.len() {
            let oct = std::str::from_utf8(&bytes[i + 1..i + 4]).ok();
            if let Some(v) = oct.and_then(|o| u8::from_str_radix(o, 8).ok()) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime shared:5 - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw,nsdelegate
";

    #[test]
    fn parses_hybrid_with_joint_mounts() {
        let fs = CgroupFs::from_mountinfo(HYBRID).unwrap();
        assert_eq!(fs.layout(), Layout::Hybrid);
        let c = fs.controllers();
        assert_eq!(c["cpu"], PathBuf::from("/sys/fs/cgroup/cpu,cpuacct"));
        assert_eq!(c["cpuacct"], PathBuf::from("/sys/fs/cgroup/cpu,cpuacct"));
        assert_eq!(c["memory"], PathBuf::from("/sys/fs/cgroup/memory"));
        assert_eq!(c["name=systemd"], PathBuf::from("/sys/fs/cgroup/systemd"));
        assert!(!c.contains_key("rw") && !c.contains_key("xattr"));
        assert_eq!(fs.unified(), Some(Path::new("/sys/fs/cgroup/unified")));
    }

    #[test]
    fn parses_pure_v2_and_v1() {
        let v2 = "29 23 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n";
        let fs = CgroupFs::from_mountinfo(v2).unwrap();
        assert_eq!(fs.layout(), Layout::V2);
        let v1 = "35 31 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n";
        assert_eq!(CgroupFs::from_mountinfo(v1).unwrap().layout(), Layout::V1);
    }

    #[test]
    fn rejects_no_mounts_and_garbage() {
        let none = "31 23 0:28 / /tmp rw - tmpfs tmpfs rw\n";
        assert!(matches!(
            CgroupFs::from_mountinfo(none),
            Err(DetectError::NoCgroupMounts)
        ));
        assert!(matches!(
            CgroupFs::from_mountinfo("garbage line\n"),
            Err(DetectError::Malformed { line_no: 1, .. })
        ));
    }

    #[test]
    fn unescapes_octal() {
        assert_eq!(unescape_mountinfo(r"/a\040b"), "/a b");
        assert_eq!(unescape_mountinfo(r"/plain"), "/plain");
    }

    #[test]
    fn detects_this_host() {
        let fs = CgroupFs::detect().unwrap();
        // Whatever the host is, it must have found at least one hierarchy.
        assert!(fs.unified().is_some() || !fs.controllers().is_empty());
    }
}
