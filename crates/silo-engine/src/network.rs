//! The seam where the network service (HNS) plugs into a container's life:
//! after the engine has pinned a new network namespace for a container (or
//! a pod) and before anything runs in it, the service connects it to its
//! networks and says what /etc/hosts and /etc/resolv.conf must hold; when
//! the container exits (or the pod stops) it disconnects it. Until silo has
//! a network service, [`LoopbackOnly`] stands in: loopback and nothing else.

use crate::model::{DnsConfig, NetworkMode};
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
    /// Ports to publish on the network that holds the default route.
    pub ports: &'a [silo_network::ports::PortRequest],
    /// The container's names for the embedded DNS server (its name and
    /// short id; aliases come with each network).
    pub names: &'a [String],
    /// Upstream servers for the embedded DNS server (`--dns`); empty: the
    /// host's.
    pub dns_servers: &'a [std::net::IpAddr],
}

/// What the service set up, for the container's /etc files.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attachment {
    /// Extra /etc/hosts lines: an address and its names.
    pub hosts: Vec<(String, Vec<String>)>,
    /// The container's resolver is the embedded DNS server (127.0.0.11).
    pub embedded_dns: bool,
}

/// The embedded DNS server's address inside a container (Docker's).
pub const EMBEDDED_DNS: &str = "127.0.0.11";

/// Docker's fallback when the host has no resolver a container can reach.
const FALLBACK_DNS: [&str; 2] = ["8.8.8.8", "8.8.4.4"];

/// The resolv.conf a container gets, from the host's: `--dns*` replace the
/// matching lines; with the embedded server the nameserver is 127.0.0.11
/// (which forwards to the others); in a namespace of its own, loopback
/// nameservers (unreachable from there) are dropped, and with none left
/// Google's public servers stand in, as dockerd does.
pub(crate) fn resolv_conf(host: &str, dns: &DnsConfig, embedded: bool, own_netns: bool) -> String {
    let mut servers = Vec::new();
    let mut search = Vec::new();
    let mut options = Vec::new();
    let mut other = Vec::new();
    for line in host.lines() {
        let mut words = line.split_whitespace();
        match words.next() {
            Some("nameserver") => servers.extend(words.next().map(str::to_string)),
            Some("search" | "domain") => search = words.map(str::to_string).collect(),
            Some("options") => options.extend(words.map(str::to_string)),
            Some(w) if !w.starts_with('#') && !w.starts_with(';') => other.push(line.to_string()),
            _ => {}
        }
    }
    if !dns.servers.is_empty() {
        servers = dns.servers.iter().map(|s| s.to_string()).collect();
    }
    if embedded {
        servers = vec![EMBEDDED_DNS.to_string()];
    } else if own_netns {
        servers.retain(|s| {
            s.parse::<std::net::IpAddr>()
                .map_or(true, |ip| !ip.is_loopback())
        });
        if servers.is_empty() {
            servers = FALLBACK_DNS.iter().map(|s| s.to_string()).collect();
        }
    }
    if !dns.search.is_empty() {
        search = dns.search.clone();
    }
    if !dns.options.is_empty() {
        options = dns.options.clone();
    }
    let mut out = String::new();
    for s in &servers {
        out.push_str(&format!("nameserver {s}\n"));
    }
    if !search.is_empty() && search != ["."] {
        out.push_str(&format!("search {}\n", search.join(" ")));
    }
    if !options.is_empty() {
        out.push_str(&format!("options {}\n", options.join(" ")));
    }
    for l in other {
        out.push_str(&l);
        out.push('\n');
    }
    out
}

/// A network service, as the engine uses it.
pub trait NetworkService: Send + Sync {
    /// Connects the namespace. Called at each start, before the container
    /// runs. On failure nothing of the attachment may stay behind.
    fn attach(&self, req: &AttachRequest<'_>) -> Result<Attachment, String>;
    /// Disconnects `owner`. Idempotent: the engine also calls it for an
    /// owner the service never attached (recovery cannot know).
    fn detach(&self, owner: &str) -> Result<(), String>;
    /// Connects a running owner to one more network (`join`); `req.mode`
    /// is its mode with `join` added.
    fn connect(
        &self,
        req: &AttachRequest<'_>,
        join: &crate::model::NetworkJoin,
    ) -> Result<(), String> {
        let _ = (req, join);
        Err("this daemon has no network service".into())
    }
    /// Disconnects a running owner from one network.
    fn disconnect(&self, owner: &str, network: &str) -> Result<(), String> {
        let _ = (owner, network);
        Err("this daemon has no network service".into())
    }
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
pub(crate) fn hosts_file(
    hostname: &str,
    att: &Attachment,
    extra: &[(String, Vec<String>)],
) -> String {
    let mut s = String::from(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n",
    );
    for (addr, names) in extra {
        s.push_str(&format!("{addr}\t{}\n", names.join(" ")));
    }
    for (addr, names) in &att.hosts {
        s.push_str(&format!("{addr}\t{}\n", names.join(" ")));
    }
    if att.hosts.is_empty() {
        s.push_str(&format!("127.0.0.1\t{hostname}\n"));
    }
    s
}

/// What /etc files to write for a container.
#[derive(Debug, Clone, Copy)]
pub(crate) struct EtcFiles<'a> {
    pub hostname: &'a str,
    pub att: &'a Attachment,
    /// `--add-host` entries, resolved: (address, names).
    pub extra_hosts: &'a [(String, Vec<String>)],
    pub dns: &'a DnsConfig,
    /// The container has a network namespace of its own.
    pub own_netns: bool,
}

/// Writes hostname, hosts and resolv.conf into `dir` (the files the
/// container's /etc bind-mounts); resolv.conf is made from `host_resolv`
/// (see [`resolv_conf`]).
pub(crate) fn write_etc_files(
    dir: &Path,
    f: &EtcFiles<'_>,
    host_resolv: &Path,
) -> std::io::Result<()> {
    let host = std::fs::read_to_string(host_resolv).unwrap_or_default();
    let resolv = resolv_conf(&host, f.dns, f.att.embedded_dns, f.own_netns);
    for (name, text) in [
        ("hostname", format!("{}\n", f.hostname)),
        ("hosts", hosts_file(f.hostname, f.att, f.extra_hosts)),
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
        let dns = DnsConfig::default();
        let files = |att| EtcFiles {
            hostname: "web",
            att,
            extra_hosts: &[],
            dns: &dns,
            own_netns: true,
        };
        let plain = Attachment::default();
        write_etc_files(dir.path(), &files(&plain), &resolv).unwrap();
        let read = |n: &str| std::fs::read_to_string(dir.path().join(n)).unwrap();
        assert_eq!(read("hostname"), "web\n");
        assert!(read("hosts").ends_with("127.0.0.1\tweb\n"));
        assert_eq!(read("resolv.conf"), "nameserver 10.0.0.1\n");
        let att = Attachment {
            hosts: vec![("172.17.0.2".into(), vec!["web".into(), "web.local".into()])],
            embedded_dns: true,
        };
        write_etc_files(dir.path(), &files(&att), &resolv).unwrap();
        assert!(read("hosts").ends_with("172.17.0.2\tweb web.local\n"));
        assert!(!read("hosts").contains("127.0.0.1\tweb"));
        assert_eq!(read("resolv.conf"), "nameserver 127.0.0.11\n");
    }

    #[test]
    fn resolv_conf_follows_docker() {
        let host = "# generated\nnameserver 127.0.0.53\nnameserver 10.0.0.1\nsearch corp.example\noptions edns0\n";
        let none = DnsConfig::default();
        assert_eq!(
            resolv_conf(host, &none, false, true),
            "nameserver 10.0.0.1\nsearch corp.example\noptions edns0\n"
        );
        // The host's network keeps the loopback resolver.
        assert!(resolv_conf(host, &none, false, false).contains("nameserver 127.0.0.53"));
        // Only loopback resolvers: dockerd's fallback.
        assert_eq!(
            resolv_conf("nameserver 127.0.0.53\n", &none, false, true),
            "nameserver 8.8.8.8\nnameserver 8.8.4.4\n"
        );
        let given = DnsConfig {
            servers: vec!["192.0.2.1".parse().unwrap()],
            search: vec!["a.example".into(), "b.example".into()],
            options: vec!["ndots:2".into()],
        };
        assert_eq!(
            resolv_conf(host, &given, false, true),
            "nameserver 192.0.2.1\nsearch a.example b.example\noptions ndots:2\n"
        );
        // With the embedded server the nameserver is always 127.0.0.11.
        assert_eq!(
            resolv_conf(host, &given, true, true),
            "nameserver 127.0.0.11\nsearch a.example b.example\noptions ndots:2\n"
        );
    }
}
