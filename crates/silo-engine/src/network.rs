//! The seam where the network service (HNS) plugs into a container's life:
//! after the engine has pinned a new network namespace for a container (or
//! a pod) and before anything runs in it, the service connects it to its
//! networks and says what /etc/hosts and /etc/resolv.conf must hold; when
//! the container exits (or the pod stops) it disconnects it. Until silo has
//! a network service, [`LoopbackOnly`] stands in: loopback and nothing else.

use crate::model::NetworkMode;
use std::path::Path;

/// What is being connected.
#[derive(Debug, Clone, Copy)]
pub struct AttachRequest<'a> {
    /// The container's or the pod's id.
    pub owner: &'a str,
    /// The pinned network namespace (loopback already up).
    pub netns: &'a Path,
    pub mode: &'a NetworkMode,
    pub hostname: &'a str,
}

/// What the service set up, for the container's /etc files.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attachment {
    /// Extra /etc/hosts lines: an address and its names.
    pub hosts: Vec<(String, Vec<String>)>,
    /// The content of /etc/resolv.conf; None: the host's.
    pub resolv_conf: Option<String>,
}

/// A network service, as the engine uses it.
pub trait NetworkService: Send + Sync {
    /// Connects the namespace. Called at each start, before the container
    /// runs. On failure nothing of the attachment may stay behind.
    fn attach(&self, req: &AttachRequest<'_>) -> Result<Attachment, String>;
    /// Disconnects `owner`. Idempotent: the engine also calls it for an
    /// owner the service never attached (recovery cannot know).
    fn detach(&self, owner: &str) -> Result<(), String>;
}

/// No networks: the namespace has loopback only.
#[derive(Debug, Clone, Copy, Default)]
pub struct LoopbackOnly;

impl NetworkService for LoopbackOnly {
    fn attach(&self, _: &AttachRequest<'_>) -> Result<Attachment, String> {
        Ok(Attachment::default())
    }

    fn detach(&self, _: &str) -> Result<(), String> {
        Ok(())
    }
}

/// The /etc/hosts a container gets: loopback names, its own hostname, and
/// what the network service added.
pub(crate) fn hosts_file(hostname: &str, att: &Attachment) -> String {
    let mut s = String::from(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n",
    );
    for (addr, names) in &att.hosts {
        s.push_str(&format!("{addr}\t{}\n", names.join(" ")));
    }
    if att.hosts.is_empty() {
        s.push_str(&format!("127.0.0.1\t{hostname}\n"));
    }
    s
}

/// Writes hostname, hosts and resolv.conf into `dir` (the files the
/// container's /etc bind-mounts); resolv.conf is the service's or a copy
/// of `host_resolv`.
pub(crate) fn write_etc_files(
    dir: &Path,
    hostname: &str,
    att: &Attachment,
    host_resolv: &Path,
) -> std::io::Result<()> {
    let resolv = match &att.resolv_conf {
        Some(r) => r.clone(),
        None => std::fs::read_to_string(host_resolv).unwrap_or_default(),
    };
    for (name, text) in [
        ("hostname", format!("{hostname}\n")),
        ("hosts", hosts_file(hostname, att)),
        ("resolv.conf", resolv),
    ] {
        let p = dir.join(name);
        std::fs::write(&p, text)
            .map_err(|e| std::io::Error::new(e.kind(), format!("writing {}: {e}", p.display())))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etc_files_from_an_attachment() {
        let dir = tempfile::tempdir().unwrap();
        let resolv = dir.path().join("host-resolv");
        std::fs::write(&resolv, "nameserver 10.0.0.1\n").unwrap();
        write_etc_files(dir.path(), "web", &Attachment::default(), &resolv).unwrap();
        let read = |n: &str| std::fs::read_to_string(dir.path().join(n)).unwrap();
        assert_eq!(read("hostname"), "web\n");
        assert!(read("hosts").ends_with("127.0.0.1\tweb\n"));
        assert_eq!(read("resolv.conf"), "nameserver 10.0.0.1\n");
        let att = Attachment {
            hosts: vec![("172.17.0.2".into(), vec!["web".into(), "web.local".into()])],
            resolv_conf: Some("nameserver 172.17.0.1\n".into()),
        };
        write_etc_files(dir.path(), "web", &att, &resolv).unwrap();
        assert!(read("hosts").ends_with("172.17.0.2\tweb web.local\n"));
        assert!(!read("hosts").contains("127.0.0.1\tweb"));
        assert_eq!(read("resolv.conf"), "nameserver 172.17.0.1\n");
    }
}
