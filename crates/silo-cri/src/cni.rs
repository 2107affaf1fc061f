//! CNI: pod networks from the plugins a Kubernetes node already has
//! (bridge, host-local, portmap; Calico, Cilium, Flannel), run the way the
//! CNI spec says: the first config in the config directory, each plugin of
//! its list in turn with the previous one's result, DEL in reverse order.
//! With no config at all, pods use silo's own network instead.

use serde_json::{json, Value};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// How long one plugin call may take before it is killed.
const PLUGIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);
/// The most of a plugin's stdout or stderr that is kept.
const MAX_PLUGIN_OUTPUT: u64 = 1 << 20;

/// Waits for `child` at most `limit` (then kills it), keeping at most
/// [`MAX_PLUGIN_OUTPUT`] bytes of each of its outputs.
fn bounded_output(
    mut child: std::process::Child,
    limit: std::time::Duration,
) -> std::io::Result<std::process::Output> {
    use std::io::Read;
    let drain = |r: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            if let Some(r) = r {
                let mut r = r.take(MAX_PLUGIN_OUTPUT);
                let _ = r.read_to_end(&mut v);
                // Keep the pipe drained so the plugin never blocks on it.
                let _ = std::io::copy(&mut r.into_inner(), &mut std::io::sink());
            }
            v
        })
    };
    let out = drain(
        child
            .stdout
            .take()
            .map(|o| Box::new(o) as Box<dyn Read + Send>),
    );
    let err = drain(
        child
            .stderr
            .take()
            .map(|e| Box::new(e) as Box<dyn Read + Send>),
    );
    let deadline = std::time::Instant::now() + limit;
    // Woken by the exit itself (a pidfd), not by a polling tick: a plugin
    // runs twice in every pod's life.
    let pidfd = i32::try_from(child.id())
        .ok()
        .and_then(|pid| silo_sys::pidfd::PidFd::open(pid).ok());
    let status = loop {
        if let Some(s) = child.try_wait()? {
            break s;
        }
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            let _ = child.kill();
            let _ = child.wait();
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no answer within {} s; killed", limit.as_secs()),
            ));
        }
        match &pidfd {
            Some(fd) => {
                fd.wait(Some(left));
            }
            None => std::thread::sleep(left.min(std::time::Duration::from_millis(5))),
        }
    };
    Ok(std::process::Output {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    })
}

/// Where the configs and plugins are.
#[derive(Debug, Clone)]
pub struct CniConfig {
    /// `/etc/cni/net.d`.
    pub conf_dir: PathBuf,
    /// `/opt/cni/bin` and `/usr/lib/cni` (Debian), searched in order.
    pub bin_dirs: Vec<PathBuf>,
    /// Where each pod's ADD result is kept (for its IP and its DEL).
    pub state_dir: PathBuf,
}

/// Why a CNI step failed: the message names the file or plugin.
#[derive(Debug, thiserror::Error)]
pub enum CniError {
    #[error("CNI config {path}: {message}")]
    Config { path: PathBuf, message: String },
    #[error("CNI plugin {plugin:?} not found in {dirs}")]
    NoPlugin { plugin: String, dirs: String },
    #[error("CNI plugin {plugin} ({command}): {message}")]
    Plugin {
        plugin: String,
        command: &'static str,
        message: String,
    },
    #[error("CNI state {path}: {source}")]
    State {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// A network config list, as loaded.
#[derive(Debug, Clone, PartialEq)]
pub struct NetList {
    pub path: PathBuf,
    pub name: String,
    pub version: String,
    pub plugins: Vec<Value>,
}

/// Who the pod is, for CNI_ARGS and capabilities.
pub struct PodInfo<'a> {
    pub id: &'a str,
    pub netns: &'a Path,
    pub name: &'a str,
    pub namespace: &'a str,
    pub uid: &'a str,
    /// (protocol, container port, host port, host ip) from the sandbox config.
    pub port_mappings: &'a [(i32, i32, i32, String)],
}

impl CniConfig {
    /// The first config file by name (`.conflist`, `.conf`, `.json`), or
    /// None when there is none; a file that does not parse is an error.
    pub fn load(&self) -> Result<Option<NetList>, CniError> {
        let mut files: Vec<PathBuf> = match std::fs::read_dir(&self.conf_dir) {
            Ok(rd) => rd
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    matches!(
                        p.extension().and_then(|e| e.to_str()),
                        Some("conflist" | "conf" | "json")
                    )
                })
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(CniError::Config {
                    path: self.conf_dir.clone(),
                    message: e.to_string(),
                })
            }
        };
        files.sort();
        let Some(path) = files.into_iter().next() else {
            return Ok(None);
        };
        let bad = |message: String| CniError::Config {
            path: path.clone(),
            message,
        };
        let text = std::fs::read(&path).map_err(|e| bad(e.to_string()))?;
        let v: Value = serde_json::from_slice(&text).map_err(|e| bad(format!("not JSON: {e}")))?;
        let name = v["name"]
            .as_str()
            .filter(|n| !n.is_empty())
            .ok_or_else(|| bad("no \"name\"".into()))?
            .to_string();
        let version = v["cniVersion"].as_str().unwrap_or("0.4.0").to_string();
        let plugins = match v.get("plugins") {
            Some(Value::Array(list)) if !list.is_empty() => list.clone(),
            Some(_) => return Err(bad("\"plugins\" must be a non-empty list".into())),
            // A single-plugin .conf.
            None => vec![v.clone()],
        };
        for p in &plugins {
            if p["type"]
                .as_str()
                .is_none_or(|t| t.is_empty() || t.contains('/'))
            {
                return Err(bad(
                    "every plugin needs a \"type\" (a plugin file name)".into()
                ));
            }
        }
        Ok(Some(NetList {
            path,
            name,
            version,
            plugins,
        }))
    }

    fn state_path(&self, pod: &str) -> PathBuf {
        self.state_dir.join(format!("{pod}.json"))
    }

    fn plugin(&self, t: &str) -> Result<PathBuf, CniError> {
        self.bin_dirs
            .iter()
            .map(|d| d.join(t))
            .find(|p| p.is_file())
            .ok_or_else(|| CniError::NoPlugin {
                plugin: t.to_string(),
                dirs: self
                    .bin_dirs
                    .iter()
                    .map(|d| d.display().to_string())
                    .collect::<Vec<_>>()
                    .join(":"),
            })
    }

    fn invoke(
        &self,
        command: &'static str,
        list: &NetList,
        plugin: &Value,
        prev: Option<&Value>,
        pod: &PodInfo<'_>,
    ) -> Result<Value, CniError> {
        let t = plugin["type"].as_str().unwrap_or_default().to_string();
        let bin = self.plugin(&t)?;
        let mut conf = plugin.clone();
        conf["name"] = json!(list.name);
        conf["cniVersion"] = json!(list.version);
        if let Some(p) = prev {
            conf["prevResult"] = p.clone();
        }
        if conf["capabilities"]["portMappings"] == json!(true) {
            let maps: Vec<Value> = pod
                .port_mappings
                .iter()
                .map(|(proto, cport, hport, hip)| {
                    json!({
                        "hostPort": hport, "containerPort": cport,
                        "protocol": match proto { 1 => "udp", 2 => "sctp", _ => "tcp" },
                        "hostIP": hip,
                    })
                })
                .collect();
            conf["runtimeConfig"] = json!({ "portMappings": maps });
        }
        let path = self
            .bin_dirs
            .iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(":");
        let fail = |message: String| CniError::Plugin {
            plugin: t.clone(),
            command,
            message,
        };
        let mut child = Command::new(&bin)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", pod.id)
            .env("CNI_NETNS", pod.netns)
            .env("CNI_IFNAME", "eth0")
            .env("CNI_PATH", path)
            .env(
                "CNI_ARGS",
                format!(
                    "IgnoreUnknown=1;K8S_POD_NAMESPACE={};K8S_POD_NAME={};K8S_POD_INFRA_CONTAINER_ID={};K8S_POD_UID={}",
                    pod.namespace, pod.name, pod.id, pod.uid
                ),
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| fail(format!("running {}: {e}", bin.display())))?;
        if let Some(mut stdin) = child.stdin.take() {
            let _ = stdin.write_all(conf.to_string().as_bytes());
        }
        let out = bounded_output(child, PLUGIN_TIMEOUT)
            .map_err(|e| fail(format!("{}: {e}", bin.display())))?;
        if !out.status.success() {
            let msg = serde_json::from_slice::<Value>(&out.stdout)
                .ok()
                .and_then(|v| {
                    let m = v["msg"].as_str()?.to_string();
                    Some(match v["details"].as_str() {
                        Some(d) if !d.is_empty() => format!("{m}: {d}"),
                        _ => m,
                    })
                })
                .unwrap_or_else(|| {
                    format!(
                        "{}: {}{}",
                        out.status,
                        String::from_utf8_lossy(&out.stdout).trim(),
                        String::from_utf8_lossy(&out.stderr).trim()
                    )
                });
            return Err(fail(msg));
        }
        if command == "DEL" || out.stdout.iter().all(u8::is_ascii_whitespace) {
            return Ok(prev.cloned().unwrap_or(Value::Null));
        }
        serde_json::from_slice(&out.stdout)
            .map_err(|e| fail(format!("its result is not JSON: {e}")))
    }

    /// Runs ADD through the list and keeps the result; on a failure the
    /// plugins already run are undone (DEL) before the error returns.
    pub fn add(&self, list: &NetList, pod: &PodInfo<'_>) -> Result<Value, CniError> {
        let mut result: Option<Value> = None;
        for (i, plugin) in list.plugins.iter().enumerate() {
            match self.invoke("ADD", list, plugin, result.as_ref(), pod) {
                Ok(r) => result = Some(r),
                Err(e) => {
                    for p in list.plugins[..=i].iter().rev() {
                        if let Err(d) = self.invoke("DEL", list, p, result.as_ref(), pod) {
                            tracing::warn!(pod = pod.id, "undoing CNI ADD: {d}");
                        }
                    }
                    return Err(e);
                }
            }
        }
        let result = result.unwrap_or(Value::Null);
        let state = json!({ "list": list.path, "name": list.name, "version": list.version,
            "plugins": list.plugins, "result": result });
        let path = self.state_path(pod.id);
        let write = || -> std::io::Result<()> {
            std::fs::create_dir_all(&self.state_dir)?;
            let tmp = path.with_extension("tmp");
            std::fs::write(&tmp, state.to_string())?;
            std::fs::rename(&tmp, &path)
        };
        if let Err(source) = write() {
            for p in list.plugins.iter().rev() {
                let _ = self.invoke("DEL", list, p, Some(&result), pod);
            }
            return Err(CniError::State { path, source });
        }
        Ok(result)
    }

    /// Runs DEL (in reverse order, with the config the ADD used) for a pod
    /// that was added; carries on past a failing plugin and reports every
    /// failure. A pod never added (or already deleted) is done.
    pub fn del(&self, pod: &PodInfo<'_>) -> Result<(), Vec<CniError>> {
        let path = self.state_path(pod.id);
        let state: Value = match std::fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| {
                vec![CniError::State {
                    path: path.clone(),
                    source: std::io::Error::other(format!(
                        "not JSON ({e}): the pod's network cannot be released from it"
                    )),
                }]
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(source) => return Err(vec![CniError::State { path, source }]),
        };
        let list = NetList {
            path: PathBuf::from(state["list"].as_str().unwrap_or_default()),
            name: state["name"].as_str().unwrap_or_default().to_string(),
            version: state["version"].as_str().unwrap_or("0.4.0").to_string(),
            plugins: state["plugins"].as_array().cloned().unwrap_or_default(),
        };
        let prev = state.get("result").cloned();
        let errors: Vec<CniError> = list
            .plugins
            .iter()
            .rev()
            .filter_map(|p| self.invoke("DEL", &list, p, prev.as_ref(), pod).err())
            .collect();
        if !errors.is_empty() {
            return Err(errors);
        }
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(vec![CniError::State { path, source: e }])
            }
            _ => Ok(()),
        }
    }

    /// The pod's first IPv4 address from its ADD result (else its first).
    pub fn ip(&self, pod: &str) -> Option<String> {
        let b = std::fs::read(self.state_path(pod)).ok()?;
        let v: Value = serde_json::from_slice(&b).ok()?;
        first_ip(&v["result"])
    }
}

/// The first address of a CNI result: `ips[].address` (0.3+), or
/// `ip4.ip` (0.2).
pub fn first_ip(result: &Value) -> Option<String> {
    let mut addrs: Vec<String> = result["ips"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i["address"].as_str())
        .map(|a| a.split('/').next().unwrap_or(a).to_string())
        .collect();
    if let Some(a) = result["ip4"]["ip"].as_str() {
        addrs.push(a.split('/').next().unwrap_or(a).to_string());
    }
    addrs
        .iter()
        .find(|a| !a.contains(':'))
        .or(addrs.first())
        .cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(dir: &Path) -> CniConfig {
        CniConfig {
            conf_dir: dir.join("net.d"),
            bin_dirs: vec![dir.join("bin")],
            state_dir: dir.join("state"),
        }
    }

    #[test]
    fn configs_load_first_by_name_and_bad_ones_are_named() {
        let d = tempfile::tempdir().unwrap();
        let c = cfg(d.path());
        assert!(c.load().unwrap().is_none(), "no directory: no config");
        std::fs::create_dir(d.path().join("net.d")).unwrap();
        assert!(c.load().unwrap().is_none());
        std::fs::write(
            d.path().join("net.d/20-b.conf"),
            r#"{"cniVersion":"0.4.0","name":"b","type":"bridge"}"#,
        )
        .unwrap();
        std::fs::write(
            d.path().join("net.d/10-a.conflist"),
            r#"{"cniVersion":"1.0.0","name":"a","plugins":[{"type":"bridge"},{"type":"portmap"}]}"#,
        )
        .unwrap();
        let l = c.load().unwrap().unwrap();
        assert_eq!(
            (l.name.as_str(), l.version.as_str(), l.plugins.len()),
            ("a", "1.0.0", 2)
        );
        std::fs::write(d.path().join("net.d/05-bad.conf"), "{not json").unwrap();
        let e = c.load().unwrap_err().to_string();
        assert!(e.contains("05-bad.conf") && e.contains("not JSON"), "{e}");
        std::fs::write(
            d.path().join("net.d/05-bad.conf"),
            r#"{"name":"x","plugins":[{"type":"../x"}]}"#,
        )
        .unwrap();
        let e = c.load().unwrap_err().to_string();
        assert!(e.contains("\"type\""), "{e}");
    }

    #[test]
    fn first_ip_prefers_ipv4() {
        let r = json!({"ips":[{"address":"fd00::5/64"},{"address":"10.88.0.5/16"}]});
        assert_eq!(first_ip(&r).as_deref(), Some("10.88.0.5"));
        assert_eq!(
            first_ip(&json!({"ip4":{"ip":"10.1.0.2/24"}})).as_deref(),
            Some("10.1.0.2")
        );
        assert_eq!(first_ip(&json!({})), None);
    }

    #[test]
    fn a_plugin_that_hangs_is_killed_and_its_output_bounded() {
        let child = Command::new("sleep")
            .arg("30")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let e = bounded_output(child, std::time::Duration::from_millis(200)).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::TimedOut);
        let child = Command::new("sh")
            .args(["-c", "head -c 3000000 /dev/zero; echo err >&2"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let out = bounded_output(child, std::time::Duration::from_secs(10)).unwrap();
        assert_eq!(out.stdout.len() as u64, MAX_PLUGIN_OUTPUT);
        assert_eq!(out.stderr, b"err\n");
    }

    #[test]
    fn a_missing_plugin_is_named() {
        let d = tempfile::tempdir().unwrap();
        let c = cfg(d.path());
        let list = NetList {
            path: PathBuf::new(),
            name: "n".into(),
            version: "0.4.0".into(),
            plugins: vec![json!({"type":"nosuch"})],
        };
        let pod = PodInfo {
            id: "p",
            netns: Path::new("/nonexistent"),
            name: "a",
            namespace: "b",
            uid: "c",
            port_mappings: &[],
        };
        let e = c.add(&list, &pod).unwrap_err().to_string();
        assert!(e.contains("nosuch") && e.contains("bin"), "{e}");
        assert!(!d.path().join("state/p.json").exists());
    }
}
