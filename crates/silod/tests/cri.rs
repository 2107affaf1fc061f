//! The Kubernetes CRI through a real gRPC client on silod's CRI socket:
//! a pod of two containers sharing its network, ExecSync (with a timeout
//! that kills), CRI logs and their reopen, stats, resource updates,
//! security contexts, idempotent stop and remove, a pod on a CNI bridge
//! network, pulls through a registry mirror, and the bad inputs. silod
//! runs in a network namespace of its own.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use silo_cri::client::{connect, Client};
use silo_cri::proto as cri;
use silo_cri::tonic::Code;
use silo_testsupport::{Cli, Daemon};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

const SILOD: &str = env!("CARGO_BIN_EXE_silod");

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn pod_config(name: &str, log_dir: &Path) -> cri::PodSandboxConfig {
    cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: name.into(),
            uid: format!("uid-{name}"),
            namespace: "default".into(),
            attempt: 0,
        }),
        hostname: name.into(),
        log_directory: log_dir.join(name).to_string_lossy().into_owned(),
        labels: HashMap::from([("app".to_string(), name.to_string())]),
        linux: Some(cri::LinuxPodSandboxConfig {
            security_context: Some(cri::LinuxSandboxSecurityContext {
                namespace_options: Some(cri::NamespaceOption {
                    pid: 1,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn container(name: &str, cmd: &[&str]) -> cri::ContainerConfig {
    cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata {
            name: name.into(),
            attempt: 0,
        }),
        image: Some(cri::ImageSpec {
            image: "busybox".into(),
            ..Default::default()
        }),
        command: cmd.iter().map(|s| s.to_string()).collect(),
        log_path: format!("{name}/0.log"),
        labels: HashMap::from([("c".to_string(), name.to_string())]),
        ..Default::default()
    }
}

async fn run_pod(
    c: &mut Client,
    config: &cri::PodSandboxConfig,
) -> Result<String, silo_cri::tonic::Status> {
    c.runtime
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: String::new(),
        })
        .await
        .map(|r| r.into_inner().pod_sandbox_id)
}

async fn create(
    c: &mut Client,
    pod: &str,
    sandbox: &cri::PodSandboxConfig,
    config: cri::ContainerConfig,
) -> Result<String, silo_cri::tonic::Status> {
    c.runtime
        .create_container(cri::CreateContainerRequest {
            pod_sandbox_id: pod.into(),
            config: Some(config),
            sandbox_config: Some(sandbox.clone()),
        })
        .await
        .map(|r| r.into_inner().container_id)
}

async fn start(c: &mut Client, id: &str) {
    c.runtime
        .start_container(cri::StartContainerRequest {
            container_id: id.into(),
        })
        .await
        .unwrap();
}

async fn exec(
    c: &mut Client,
    id: &str,
    cmd: &[&str],
    timeout: i64,
) -> Result<cri::ExecSyncResponse, silo_cri::tonic::Status> {
    c.runtime
        .exec_sync(cri::ExecSyncRequest {
            container_id: id.into(),
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            timeout,
        })
        .await
        .map(|r| r.into_inner())
}

async fn status(c: &mut Client, id: &str) -> cri::ContainerStatus {
    c.runtime
        .container_status(cri::ContainerStatusRequest {
            container_id: id.into(),
            verbose: false,
        })
        .await
        .unwrap()
        .into_inner()
        .status
        .unwrap()
}

/// Waits for `cond` on the container's status (a few seconds at most).
async fn wait_status(
    c: &mut Client,
    id: &str,
    cond: impl Fn(&cri::ContainerStatus) -> bool,
) -> cri::ContainerStatus {
    for _ in 0..200 {
        let s = status(c, id).await;
        if cond(&s) {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "container {id} never reached the state wanted: {:?}",
        status(c, id).await
    );
}

/// Runs `f` on a thread that joined silod's network namespace (where the
/// streaming server's 127.0.0.1 is); the CRI socket is a file, so the
/// client reaches it from anywhere.
fn in_daemon_netns<F: std::future::Future<Output = ()>>(d: &Daemon, f: impl FnOnce() -> F + Send) {
    let ns = d.netns_file();
    std::thread::scope(|s| {
        s.spawn(|| {
            kubeshim::in_netns(&ns);
            rt().block_on(f());
        })
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p));
    });
}

fn daemon(extra: &[&str]) -> (Daemon, PathBuf) {
    let d = Daemon::start_in_netns_with(Path::new(SILOD), Cli::Docker, extra);
    d.import_busybox();
    let sock = d.exec_root().join("cri.sock");
    (d, sock)
}

/// What `script` prints in container `ctr` (a client that needs its
/// server up), retried until it prints `want` (or for about a minute).
async fn reply_from(c: &mut Client, ctr: &str, script: &str, want: &str) -> String {
    let mut got = String::new();
    for _ in 0..50 {
        let r = exec(c, ctr, &["sh", "-c", script], 10).await.unwrap();
        got = String::from_utf8_lossy(&r.stdout).trim().to_string();
        if got == want {
            break;
        }
    }
    got
}

/// StopPodSandbox then RemovePodSandbox.
async fn end_pod(c: &mut Client, pod: &str) {
    c.runtime
        .stop_pod_sandbox(cri::StopPodSandboxRequest {
            pod_sandbox_id: pod.into(),
        })
        .await
        .unwrap();
    c.runtime
        .remove_pod_sandbox(cri::RemovePodSandboxRequest {
            pod_sandbox_id: pod.into(),
        })
        .await
        .unwrap();
}

/// What a TCP server at `addr` says, read from silod's network namespace,
/// retried until it says `want` (or a few seconds pass).
fn answer_in_netns(d: &Daemon, addr: &str, want: &str) -> String {
    let (host, port) = addr.split_once(':').unwrap();
    let script = format!("exec 3<>/dev/tcp/{host}/{port}; cat <&3");
    let mut got = String::new();
    for _ in 0..30 {
        let out = d.in_netns(&["timeout", "5", "bash", "-c", &script]);
        got = silo_testsupport::stdout(&out).trim().to_string();
        if got == want {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    got
}

/// Asserts silod's namespace holds no veth once the reaper (which deletes
/// detached veths off the exit path) has caught up.
fn no_veths(d: &Daemon) {
    let mut left = String::new();
    for _ in 0..100 {
        let out = d.in_netns(&["ip", "-o", "link", "show", "type", "veth"]);
        left = silo_testsupport::stdout(&out).trim().to_string();
        if left.is_empty() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("veths left behind:\n{left}");
}

#[test]
fn a_pod_lives_its_whole_life_through_the_cri() {
    let cgroup_parent = format!("/silo-cri-test-{}/pod-web", std::process::id());
    let empty = tempfile::tempdir().unwrap();
    let conf = empty.path().to_string_lossy().into_owned();
    let (d, sock) = daemon(&["--cni-conf-dir", &conf]);
    let logs = d.dir().join("pods");
    rt().block_on(async {
        let mut c = connect(&sock).await.unwrap();
        let v = c
            .runtime
            .version(cri::VersionRequest::default())
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            (v.runtime_name.as_str(), v.runtime_api_version.as_str()),
            ("silo", "v1")
        );
        let st = c
            .runtime
            .status(cri::StatusRequest { verbose: true })
            .await
            .unwrap()
            .into_inner();
        let conds = st.status.unwrap().conditions;
        assert!(conds.iter().all(|c| c.status), "{conds:?}");
        assert!(st.info["config"].contains("silo nat"), "{:?}", st.info);
        let rc = c
            .runtime
            .runtime_config(cri::RuntimeConfigRequest {})
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            rc.linux.unwrap().cgroup_driver,
            cri::CgroupDriver::Cgroupfs as i32
        );

        // A pod of two containers: one serves on 127.0.0.1:9000, the other reaches it.
        // The evented PLEG's stream, from before the pod exists.
        let mut events = c
            .runtime
            .clone()
            .get_container_events(cri::GetEventsRequest {})
            .await
            .unwrap()
            .into_inner();
        let mut sandbox = pod_config("web", &logs);
        sandbox.linux.as_mut().unwrap().cgroup_parent = cgroup_parent.clone();
        let pod = run_pod(&mut c, &sandbox).await.unwrap();
        let server = create(
            &mut c,
            &pod,
            &sandbox,
            container(
                "server",
                &[
                    "sh",
                    "-c",
                    "echo started; echo oops >&2; while true; do echo hello | nc -l -p 9000; done",
                ],
            ),
        )
        .await
        .unwrap();
        let mut client_cfg = container("client", &["sleep", "1000"]);
        client_cfg.linux = Some(cri::LinuxContainerConfig {
            resources: Some(cri::LinuxContainerResources {
                memory_limit_in_bytes: 64 << 20,
                oom_score_adj: -500,
                ..Default::default()
            }),
            security_context: Some(cri::LinuxContainerSecurityContext {
                run_as_user: Some(cri::Int64Value { value: 1234 }),
                run_as_group: Some(cri::Int64Value { value: 2345 }),
                supplemental_groups: vec![3456],
                readonly_rootfs: true,
                no_new_privs: true,
                capabilities: Some(cri::Capability {
                    drop_capabilities: vec!["ALL".into()],
                    add_capabilities: vec!["NET_RAW".into()],
                    ..Default::default()
                }),
                ..Default::default()
            }),
        });
        let client = create(&mut c, &pod, &sandbox, client_cfg).await.unwrap();
        start(&mut c, &server).await;
        start(&mut c, &client).await;
        let got = reply_from(&mut c, &client, "sleep 1 | nc 127.0.0.1 9000", "hello").await;
        assert_eq!(got, "hello", "the pod's containers share 127.0.0.1");

        // Security context, from inside.
        // Its cgroup is under the pod's cgroup parent.
        let cg = exec(&mut c, &client, &["cat", "/proc/self/cgroup"], 5)
            .await
            .unwrap();
        let cg = String::from_utf8_lossy(&cg.stdout).to_string();
        let under = format!("{cgroup_parent}/{client}");
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let homes: Vec<String> = mounts
            .lines()
            .filter(|l| l.contains(" - cgroup ") || l.contains(" - cgroup2 "))
            .filter_map(|l| l.split(' ').nth(4))
            .map(|root| format!("{root}{under}"))
            .filter(|p| std::path::Path::new(p).is_dir())
            .collect();
        assert!(
            !homes.is_empty(),
            "no cgroup at {under}; the container sees:\n{cg}"
        );
        let id = exec(&mut c, &client, &["id"], 5).await.unwrap();
        let id = String::from_utf8_lossy(&id.stdout).to_string();
        assert!(
            id.contains("uid=1234") && id.contains("gid=2345") && id.contains("3456"),
            "{id}"
        );
        let ro = exec(&mut c, &client, &["touch", "/x"], 5).await.unwrap();
        assert_ne!(ro.exit_code, 0, "the rootfs is read-only");
        assert!(
            String::from_utf8_lossy(&ro.stderr).contains("Read-only"),
            "{ro:?}"
        );
        let caps = exec(
            &mut c,
            &client,
            &["grep", "-E", "CapBnd|NoNewPrivs", "/proc/self/status"],
            5,
        )
        .await
        .unwrap();
        let caps = String::from_utf8_lossy(&caps.stdout).to_string();
        assert!(
            caps.contains("CapBnd:\t0000000000002000") && caps.contains("NoNewPrivs:\t1"),
            "{caps}"
        );
        // A negative oom_score_adj is clamped where the host forbids it.
        let oom = exec(&mut c, &client, &["cat", "/proc/1/oom_score_adj"], 5)
            .await
            .unwrap();
        let oom: i32 = String::from_utf8_lossy(&oom.stdout).trim().parse().unwrap();
        assert!(oom == -500 || oom == 0, "{oom}");
        // Hostname and resolv.conf come from the pod.
        let h = exec(&mut c, &server, &["hostname"], 5).await.unwrap();
        assert_eq!(String::from_utf8_lossy(&h.stdout).trim(), "web");

        // ExecSync: exit codes, stderr, and a timeout that kills.
        let r = exec(
            &mut c,
            &client,
            &["sh", "-c", "echo out; echo err >&2; exit 3"],
            5,
        )
        .await
        .unwrap();
        assert_eq!(
            (r.exit_code, r.stdout.as_slice(), r.stderr.as_slice()),
            (3, &b"out\n"[..], &b"err\n"[..])
        );
        let t = exec(&mut c, &client, &["sleep", "30"], 1)
            .await
            .unwrap_err();
        assert_eq!(t.code(), Code::DeadlineExceeded, "{t:?}");
        let ps = exec(&mut c, &client, &["ps"], 5).await.unwrap();
        assert!(
            !String::from_utf8_lossy(&ps.stdout).contains("sleep 30"),
            "the timed-out exec was killed"
        );

        // Status, list and filters.
        let s = status(&mut c, &server).await;
        assert_eq!(s.state, cri::ContainerState::ContainerRunning as i32);
        assert!(s.log_path.ends_with("web/server/0.log"), "{}", s.log_path);
        let ps = c
            .runtime
            .pod_sandbox_status(cri::PodSandboxStatusRequest {
                pod_sandbox_id: pod.clone(),
                verbose: true,
            })
            .await
            .unwrap()
            .into_inner();
        let ip = ps.status.unwrap().network.unwrap().ip;
        assert!(ip.parse::<std::net::Ipv4Addr>().is_ok(), "pod ip {ip:?}");
        let listed = c
            .runtime
            .list_containers(cri::ListContainersRequest {
                filter: Some(cri::ContainerFilter {
                    label_selector: HashMap::from([("c".to_string(), "client".to_string())]),
                    ..Default::default()
                }),
            })
            .await
            .unwrap()
            .into_inner()
            .containers;
        assert_eq!(
            listed.iter().map(|x| x.id.as_str()).collect::<Vec<_>>(),
            vec![client.as_str()]
        );
        let pods = c
            .runtime
            .list_pod_sandbox(cri::ListPodSandboxRequest {
                filter: Some(cri::PodSandboxFilter {
                    label_selector: HashMap::from([("app".to_string(), "web".to_string())]),
                    ..Default::default()
                }),
            })
            .await
            .unwrap()
            .into_inner()
            .items;
        assert_eq!(pods.len(), 1);
        assert_eq!(pods[0].metadata.as_ref().unwrap().uid, "uid-web");

        // Logs in the CRI format, and their reopen after a move.
        let log = logs.join("web/server/0.log");
        let text = std::fs::read_to_string(&log).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines.iter().any(|l| l.ends_with(" stdout F started")),
            "{text}"
        );
        assert!(
            lines.iter().any(|l| l.ends_with(" stderr F oops")),
            "{text}"
        );
        for l in &lines {
            let ts = l.split(' ').next().unwrap();
            assert!(silo_units::parse_rfc3339(ts).is_ok(), "{l}");
        }
        std::fs::rename(&log, logs.join("web/server/0.log.1")).unwrap();
        c.runtime
            .reopen_container_log(cri::ReopenContainerLogRequest {
                container_id: server.clone(),
            })
            .await
            .unwrap();
        assert!(log.exists(), "reopen made the file again");
        exec(
            &mut c,
            &client,
            &["sh", "-c", "sleep 1 | nc 127.0.0.1 9000"],
            5,
        )
        .await
        .unwrap();

        // Stats and a resource update.
        let stats = c
            .runtime
            .container_stats(cri::ContainerStatsRequest {
                container_id: client.clone(),
            })
            .await
            .unwrap()
            .into_inner()
            .stats
            .unwrap();
        assert!(stats.memory.unwrap().working_set_bytes.unwrap().value > 0);
        assert!(stats.cpu.unwrap().usage_core_nano_seconds.unwrap().value > 0);
        // Some traffic on the pod's interface: a ping of its gateway.
        exec(
            &mut c,
            &server,
            &[
                "sh",
                "-c",
                "ping -c 2 -W 1 $(ip route | awk '/default/ {print $3}')",
            ],
            10,
        )
        .await
        .unwrap();
        let all = c
            .runtime
            .list_pod_sandbox_stats(cri::ListPodSandboxStatsRequest::default())
            .await
            .unwrap()
            .into_inner()
            .stats;
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].linux.as_ref().unwrap().containers.len(), 2);
        let linux = all[0].linux.as_ref().unwrap();
        let net = linux.network.as_ref().unwrap();
        let eth0 = net.default_interface.as_ref().unwrap();
        assert_eq!(eth0.name, "eth0");
        assert!(eth0.rx_bytes.as_ref().unwrap().value > 0, "{net:?}");
        assert!(
            linux
                .process
                .as_ref()
                .unwrap()
                .process_count
                .as_ref()
                .unwrap()
                .value
                >= 2
        );
        c.runtime
            .update_container_resources(cri::UpdateContainerResourcesRequest {
                container_id: client.clone(),
                linux: Some(cri::LinuxContainerResources {
                    memory_limit_in_bytes: 96 << 20,
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await
            .unwrap();
        let lim = exec(
            &mut c,
            &client,
            &["cat", "/sys/fs/cgroup/memory/memory.limit_in_bytes"],
            5,
        )
        .await
        .unwrap();
        let lim = String::from_utf8_lossy(&lim.stdout).trim().to_string();
        if !lim.is_empty() {
            assert_eq!(lim, (96u64 << 20).to_string());
        }
        assert_eq!(
            status(&mut c, &client)
                .await
                .resources
                .unwrap()
                .linux
                .unwrap()
                .memory_limit_in_bytes,
            96 << 20
        );

        // The node's views name the pod behind each compute system and endpoint.
        let (_, hcs) = d.http("GET", "/silo/hcs");
        let hcs: serde_json::Value = serde_json::from_str(&hcs).unwrap();
        let mine: Vec<_> = hcs
            .as_array()
            .unwrap()
            .iter()
            .filter(|v| v["Pod"]["Id"] == pod.as_str())
            .collect();
        assert_eq!(mine.len(), 2, "{hcs}");
        assert!(mine[0]["Pod"]["Name"]
            .as_str()
            .unwrap()
            .starts_with("k8s_POD_web_default_uid-web"));
        let (_, eps) = d.http("GET", "/hns/endpoints");
        let eps: serde_json::Value = serde_json::from_str(&eps).unwrap();
        assert!(
            eps.as_array()
                .unwrap()
                .iter()
                .any(|e| e["Pod"]["Id"] == pod.as_str()),
            "{eps}"
        );

        // Stop a container: exited, with its reason; then stop and remove twice.
        c.runtime
            .stop_container(cri::StopContainerRequest {
                container_id: server.clone(),
                timeout: 1,
            })
            .await
            .unwrap();
        let s = wait_status(&mut c, &server, |s| {
            s.state == cri::ContainerState::ContainerExited as i32
        })
        .await;
        assert!(
            s.finished_at >= s.started_at && !s.reason.is_empty(),
            "{s:?}"
        );
        c.runtime
            .stop_container(cri::StopContainerRequest {
                container_id: server.clone(),
                timeout: 1,
            })
            .await
            .unwrap();
        let e = exec(&mut c, &server, &["true"], 5).await.unwrap_err();
        assert_eq!(
            e.code(),
            Code::FailedPrecondition,
            "an exec in a stopped container: {e:?}"
        );
        c.runtime
            .remove_container(cri::RemoveContainerRequest {
                container_id: server.clone(),
            })
            .await
            .unwrap();
        c.runtime
            .remove_container(cri::RemoveContainerRequest {
                container_id: server.clone(),
            })
            .await
            .unwrap();
        let e = c
            .runtime
            .container_status(cri::ContainerStatusRequest {
                container_id: server.clone(),
                verbose: false,
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::NotFound);

        // An OOM kill is reported as such.
        let oom_cfg = {
            let mut x = container("hog", &["sh", "-c", "x=a; while true; do x=$x$x; done"]);
            x.linux = Some(cri::LinuxContainerConfig {
                resources: Some(cri::LinuxContainerResources {
                    memory_limit_in_bytes: 16 << 20,
                    ..Default::default()
                }),
                ..Default::default()
            });
            x
        };
        let hog = create(&mut c, &pod, &sandbox, oom_cfg).await.unwrap();
        start(&mut c, &hog).await;
        let s = wait_status(&mut c, &hog, |s| {
            s.state == cri::ContainerState::ContainerExited as i32
        })
        .await;
        assert_eq!(s.reason, "OOMKilled", "{s:?}");

        // The pod goes, and with it everything; stop and remove are idempotent.
        for _ in 0..2 {
            c.runtime
                .stop_pod_sandbox(cri::StopPodSandboxRequest {
                    pod_sandbox_id: pod.clone(),
                })
                .await
                .unwrap();
        }
        let ps = c
            .runtime
            .pod_sandbox_status(cri::PodSandboxStatusRequest {
                pod_sandbox_id: pod.clone(),
                verbose: false,
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            ps.status.unwrap().state,
            cri::PodSandboxState::SandboxNotready as i32
        );
        for _ in 0..2 {
            c.runtime
                .remove_pod_sandbox(cri::RemovePodSandboxRequest {
                    pod_sandbox_id: pod.clone(),
                })
                .await
                .unwrap();
        }
        let left = c
            .runtime
            .list_containers(cri::ListContainersRequest::default())
            .await
            .unwrap()
            .into_inner()
            .containers;
        assert!(left.is_empty(), "{left:?}");
        // Events: the sandbox created and started, each container created,
        // started and stopped, and all of them deleted, in order per id.
        let mut seen: Vec<(String, i32)> = Vec::new();
        let want_last = (
            pod.clone(),
            cri::ContainerEventType::ContainerDeletedEvent as i32,
        );
        while !seen.contains(&want_last) {
            let m = tokio::time::timeout(Duration::from_secs(10), events.message())
                .await
                .expect("events within 10 s")
                .unwrap()
                .unwrap();
            if m.container_id == pod {
                assert_eq!(
                    m.pod_sandbox_status
                        .as_ref()
                        .map(|s| s.id.as_str())
                        .unwrap_or(&pod),
                    pod
                );
            }
            seen.push((m.container_id, m.container_event_type));
        }
        let of = |id: &str| -> Vec<i32> {
            seen.iter()
                .filter(|(i, _)| i == id)
                .map(|(_, t)| *t)
                .collect()
        };
        assert_eq!(of(&pod), vec![0, 1, 2, 3], "{seen:?}");
        assert_eq!(of(&server), vec![0, 1, 2, 3], "{seen:?}");
        assert_eq!(of(&hog), vec![0, 1, 2, 3], "{seen:?}");
        assert!(d.ok(&["ps", "-aq"]).trim().is_empty());
        no_veths(&d);
    });
    // The containers' cgroups went with them; the parent is the kubelet's
    // to remove (here, the test's), in every hierarchy.
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    for root in mounts
        .lines()
        .filter(|l| l.contains(" - cgroup ") || l.contains(" - cgroup2 "))
        .filter_map(|l| l.split(' ').nth(4))
    {
        let parent = format!("{root}{cgroup_parent}");
        if let Ok(rd) = std::fs::read_dir(&parent) {
            let left: Vec<_> = rd
                .flatten()
                .filter(|e| e.path().is_dir())
                .map(|e| e.file_name())
                .collect();
            assert!(left.is_empty(), "cgroups left under {parent}: {left:?}");
        }
        let _ = std::fs::remove_dir(&parent);
        let _ = std::fs::remove_dir(format!(
            "{root}{}",
            cgroup_parent.rsplit_once('/').map_or("", |(a, _)| a)
        ));
    }
}

#[test]
fn bad_cri_input_gets_clear_codes_and_leaves_nothing() {
    let empty = tempfile::tempdir().unwrap();
    let conf = empty.path().to_string_lossy().into_owned();
    let (d, sock) = daemon(&["--cni-conf-dir", &conf]);
    let logs = d.dir().join("pods");
    rt().block_on(async {
        let mut c = connect(&sock).await.unwrap();
        // Unknown sandbox and container.
        let e = c
            .runtime
            .pod_sandbox_status(cri::PodSandboxStatusRequest {
                pod_sandbox_id: "nope".into(),
                verbose: false,
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::NotFound, "{e:?}");
        let e = c
            .runtime
            .start_container(cri::StartContainerRequest {
                container_id: "nope".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::NotFound, "{e:?}");
        c.runtime
            .stop_pod_sandbox(cri::StopPodSandboxRequest {
                pod_sandbox_id: "nope".into(),
            })
            .await
            .unwrap();
        c.runtime
            .remove_container(cri::RemoveContainerRequest {
                container_id: "nope".into(),
            })
            .await
            .unwrap();

        let sandbox = pod_config("bad", &logs);
        let pod = run_pod(&mut c, &sandbox).await.unwrap();
        // A missing image.
        let mut cfg = container("x", &["true"]);
        cfg.image = Some(cri::ImageSpec {
            image: "nosuch:1".into(),
            ..Default::default()
        });
        let e = create(&mut c, &pod, &sandbox, cfg).await.unwrap_err();
        assert_eq!(e.code(), Code::NotFound, "{e:?}");
        assert!(e.message().contains("nosuch:1"), "{e:?}");
        // A command that is not there: the start fails and the container
        // is EXITED with StartError (CREATED would make the kubelet retry).
        let bad_cmd = create(&mut c, &pod, &sandbox, container("nocmd", &["/nosuchcmd"]))
            .await
            .unwrap();
        let e = c
            .runtime
            .start_container(cri::StartContainerRequest {
                container_id: bad_cmd.clone(),
            })
            .await
            .unwrap_err();
        assert!(e.message().contains("nosuchcmd"), "{e:?}");
        let st = status(&mut c, &bad_cmd).await;
        assert_eq!(
            st.state,
            cri::ContainerState::ContainerExited as i32,
            "{st:?}"
        );
        assert_eq!(
            (st.reason.as_str(), st.exit_code),
            ("StartError", 127),
            "{st:?}"
        );
        // A TARGET that is not a container of the pod.
        let mut cfg = container("t", &["true"]);
        cfg.linux = Some(cri::LinuxContainerConfig {
            security_context: Some(cri::LinuxContainerSecurityContext {
                namespace_options: Some(cri::NamespaceOption {
                    pid: 3,
                    target_id: "nosuch".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        });
        let e = create(&mut c, &pod, &sandbox, cfg).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
        // An invalid seccomp profile path.
        let mut cfg = container("x", &["true"]);
        cfg.linux = Some(cri::LinuxContainerConfig {
            security_context: Some(cri::LinuxContainerSecurityContext {
                seccomp: Some(cri::SecurityProfile {
                    profile_type: 2,
                    localhost_ref: "/nonexistent/profile.json".into(),
                }),
                ..Default::default()
            }),
            ..Default::default()
        });
        let e = create(&mut c, &pod, &sandbox, cfg).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
        assert!(e.message().contains("/nonexistent/profile.json"), "{e:?}");
        // A hostPort already in use.
        let mut a = pod_config("porta", &logs);
        a.port_mappings = vec![cri::PortMapping {
            protocol: 0,
            container_port: 80,
            host_port: 18080,
            host_ip: String::new(),
        }];
        let pa = run_pod(&mut c, &a).await.unwrap();
        // The hostPort works on silo's own network too (from 127.0.0.1).
        let web = create(
            &mut c,
            &pa,
            &a,
            container(
                "web",
                &["sh", "-c", "while true; do echo served | nc -l -p 80; done"],
            ),
        )
        .await
        .unwrap();
        start(&mut c, &web).await;
        assert_eq!(
            answer_in_netns(&d, "127.0.0.1:18080", "served"),
            "served",
            "hostPort 18080 on silo's network"
        );
        let mut b = pod_config("portb", &logs);
        b.port_mappings = a.port_mappings.clone();
        let e = run_pod(&mut c, &b).await.unwrap_err();
        assert!(e.message().contains("18080"), "{e:?}");
        let pods = c
            .runtime
            .list_pod_sandbox(cri::ListPodSandboxRequest::default())
            .await
            .unwrap()
            .into_inner()
            .items;
        assert_eq!(pods.len(), 2, "the refused pod left nothing: {pods:?}");
        for p in [pod, pa] {
            end_pod(&mut c, &p).await;
        }
        no_veths(&d);
        let nft = d.in_netns(&["nft", "list", "map", "ip", "silo-ports", "tcp-ports"]);
        assert!(
            !silo_testsupport::stdout(&nft).contains("18080"),
            "{}",
            silo_testsupport::stdout(&nft)
        );
    });
}

#[test]
fn pods_on_a_cni_bridge_network() {
    let conf = tempfile::tempdir().unwrap();
    std::fs::write(
        conf.path().join("10-test.conflist"),
        r#"{"cniVersion":"0.4.0","name":"testnet","plugins":[
            {"type":"bridge","bridge":"cni-test0","isGateway":true,"ipMasq":false,
             "ipam":{"type":"host-local","ranges":[[{"subnet":"10.233.0.0/24"}]],
                     "dataDir":"DATADIR"}},
            {"type":"portmap","capabilities":{"portMappings":true},"snat":true}]}"#
            .replace("DATADIR", &conf.path().join("ipam").to_string_lossy()),
    )
    .unwrap();
    let dir = conf.path().to_string_lossy().into_owned();
    let (d, sock) = daemon(&["--cni-conf-dir", &dir, "--cni-bin-dir", "/usr/lib/cni"]);
    let logs = d.dir().join("pods");
    rt().block_on(async {
        let mut c = connect(&sock).await.unwrap();
        let mut pods = Vec::new();
        let mut ips = Vec::new();
        for name in ["one", "two"] {
            let mut sandbox = pod_config(name, &logs);
            if name == "two" {
                // hostPort through the portmap plugin of the chain.
                sandbox.port_mappings = vec![cri::PortMapping {
                    protocol: 0,
                    container_port: 7000,
                    host_port: 18090,
                    host_ip: String::new(),
                }];
            }
            let pod = run_pod(&mut c, &sandbox).await.unwrap();
            let ctr = create(
                &mut c,
                &pod,
                &sandbox,
                container(
                    "main",
                    &["sh", "-c", "while true; do echo hi | nc -l -p 7000; done"],
                ),
            )
            .await
            .unwrap();
            start(&mut c, &ctr).await;
            let st = c
                .runtime
                .pod_sandbox_status(cri::PodSandboxStatusRequest {
                    pod_sandbox_id: pod.clone(),
                    verbose: false,
                })
                .await
                .unwrap()
                .into_inner();
            let ip = st.status.unwrap().network.unwrap().ip;
            assert!(ip.starts_with("10.233.0."), "a CNI address: {ip:?}");
            pods.push((pod, ctr));
            ips.push(ip);
        }
        // One pod reaches the other over the CNI bridge.
        let got = reply_from(
            &mut c,
            &pods[0].1,
            &format!("sleep 1 | nc {} 7000", ips[1]),
            "hi",
        )
        .await;
        assert_eq!(got, "hi");
        // The hostPort answers on the node's address (the bridge's gateway).
        assert_eq!(
            answer_in_netns(&d, "10.233.0.1:18090", "hi"),
            "hi",
            "hostPort 18090 through portmap"
        );
        for (pod, _) in &pods {
            end_pod(&mut c, pod).await;
        }
        // host-local released both leases.
        let leases: Vec<_> = std::fs::read_dir(conf.path().join("ipam/testnet"))
            .map(|r| {
                r.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.starts_with("10."))
                    .collect()
            })
            .unwrap_or_default();
        assert!(leases.is_empty(), "{leases:?}");
        let rules = d.in_netns(&["iptables-save", "-t", "nat"]);
        assert!(
            !silo_testsupport::stdout(&rules).contains("18090"),
            "portmap's rules left: {}",
            silo_testsupport::stdout(&rules)
        );
        assert!(d
            .data_root()
            .join("cri/cni")
            .read_dir()
            .unwrap()
            .next()
            .is_none());

        // A malformed CNI config: a clear error and no pod.
        std::fs::write(conf.path().join("05-bad.conf"), "{broken").unwrap();
        let e = run_pod(&mut c, &pod_config("three", &logs))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
        assert!(e.message().contains("05-bad.conf"), "{e:?}");
        let st = c
            .runtime
            .status(cri::StatusRequest::default())
            .await
            .unwrap()
            .into_inner();
        let net = st
            .status
            .unwrap()
            .conditions
            .into_iter()
            .find(|c| c.r#type == "NetworkReady")
            .unwrap();
        assert!(
            !net.status && net.message.contains("05-bad.conf"),
            "{net:?}"
        );
        let left = c
            .runtime
            .list_pod_sandbox(cri::ListPodSandboxRequest::default())
            .await
            .unwrap()
            .into_inner()
            .items;
        assert!(left.is_empty(), "{left:?}");
    });
}

#[test]
fn images_pull_through_mirrors_and_are_shared_with_docker() {
    let reg = silo_testsupport::Registry::start();
    // Push busybox to the registry under the names the mirrors serve.
    let d0 = Daemon::start_with(Path::new(SILOD), Cli::Docker, &["--no-cri"]);
    assert!(
        !d0.exec_root().join("cri.sock").exists(),
        "--no-cri serves no CRI"
    );
    d0.import_busybox();
    for name in ["pause:3.9", "library/busybox:mirror"] {
        let tag = format!("{}/{name}", reg.host());
        d0.ok(&["tag", "busybox", &tag]);
        d0.ok(&["push", &tag]);
    }
    drop(d0);
    let mirror = format!("http://{}", reg.host());
    let k8s = format!("registry.k8s.io={mirror}");
    let hub = format!("docker.io={mirror}");
    let d = Daemon::start_with(
        Path::new(SILOD),
        Cli::Docker,
        &[
            "--registry-host-mirror",
            &k8s,
            "--registry-host-mirror",
            &hub,
        ],
    );
    let sock = d.exec_root().join("cri.sock");
    rt().block_on(async {
        let mut c = connect(&sock).await.unwrap();
        for name in ["registry.k8s.io/pause:3.9", "busybox:mirror"] {
            let r = c
                .image
                .pull_image(cri::PullImageRequest {
                    image: Some(cri::ImageSpec {
                        image: name.into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner();
            assert!(r.image_ref.starts_with("sha256:"), "{r:?}");
            let st = c
                .image
                .image_status(cri::ImageStatusRequest {
                    image: Some(cri::ImageSpec {
                        image: name.into(),
                        ..Default::default()
                    }),
                    verbose: true,
                })
                .await
                .unwrap()
                .into_inner();
            assert_eq!(st.image.unwrap().id, r.image_ref);
            assert!(st.info["info"].contains("diffIds"));
        }
        // Shared with the Docker side.
        let images = d.ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
        assert!(images.contains("registry.k8s.io/pause:3.9"), "{images}");
        let list = c
            .image
            .list_images(cri::ListImagesRequest::default())
            .await
            .unwrap()
            .into_inner()
            .images;
        assert!(
            list.iter().any(|i| i
                .repo_tags
                .iter()
                .any(|t| t == "docker.io/library/busybox:mirror" || t == "busybox:mirror")),
            "{list:?}"
        );
        let fs = c
            .image
            .image_fs_info(cri::ImageFsInfoRequest {})
            .await
            .unwrap()
            .into_inner();
        assert!(fs.image_filesystems[0].used_bytes.as_ref().unwrap().value > 0);
        // A missing image: an empty status; a failed pull: NotFound.
        let st = c
            .image
            .image_status(cri::ImageStatusRequest {
                image: Some(cri::ImageSpec {
                    image: "registry.k8s.io/nosuch:1".into(),
                    ..Default::default()
                }),
                verbose: false,
            })
            .await
            .unwrap()
            .into_inner();
        assert!(st.image.is_none());
        let e = c
            .image
            .pull_image(cri::PullImageRequest {
                image: Some(cri::ImageSpec {
                    image: format!("{}/nosuch:1", reg.host()),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::NotFound, "{e:?}");
        // Remove, twice.
        for _ in 0..2 {
            c.image
                .remove_image(cri::RemoveImageRequest {
                    image: Some(cri::ImageSpec {
                        image: "registry.k8s.io/pause:3.9".into(),
                        ..Default::default()
                    }),
                })
                .await
                .unwrap();
        }
        let images = d.ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
        assert!(!images.contains("pause"), "{images}");
        // The same mirror serves the Docker side's pulls.
        d.ok(&["pull", "registry.k8s.io/pause:3.9"]);
        let images = d.ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
        assert!(images.contains("registry.k8s.io/pause:3.9"), "{images}");
    });
}

#[test]
fn exec_attach_and_port_forward_stream_over_websocket() {
    use silo_cri::client::stream;
    let empty = tempfile::tempdir().unwrap();
    let conf = empty.path().to_string_lossy().into_owned();
    let (d, sock) = daemon(&["--cni-conf-dir", &conf]);
    let logs = d.dir().join("pods");
    in_daemon_netns(&d, || async {
        let mut c = connect(&sock).await.unwrap();
        let sandbox = pod_config("stream", &logs);
        let pod = run_pod(&mut c, &sandbox).await.unwrap();
        let srv = create(
            &mut c,
            &pod,
            &sandbox,
            container(
                "srv",
                &["sh", "-c", "while true; do echo pong | nc -l -p 8000; done"],
            ),
        )
        .await
        .unwrap();
        let mut shell_cfg = container(
            "shell",
            &["sh", "-c", "read line; echo got:$line; sleep 1000"],
        );
        shell_cfg.stdin = true;
        let shell = create(&mut c, &pod, &sandbox, shell_cfg).await.unwrap();
        start(&mut c, &srv).await;
        start(&mut c, &shell).await;
        let protocols = ["v5.channel.k8s.io", "v4.channel.k8s.io"];

        // Exec of output alone.
        let url = c
            .runtime
            .exec(cri::ExecRequest {
                container_id: srv.clone(),
                cmd: vec!["echo".into(), "probe".into()],
                stdout: true,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .url;
        let mut s = stream(&url, &protocols).await.unwrap();
        let out = s.collect().await.unwrap();
        assert_eq!(
            out.get(&1).map(Vec::as_slice),
            Some(&b"probe\n"[..]),
            "{out:?}"
        );
        let url = c
            .runtime
            .exec(cri::ExecRequest {
                container_id: srv.clone(),
                cmd: vec!["sh".into(), "-c".into(), "read x; echo got:$x".into()],
                stdin: true,
                stdout: true,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .url;
        let mut s = stream(&url, &protocols).await.unwrap();
        s.send(0, b"hello\n").await.unwrap();
        let out = s.collect().await.unwrap();
        assert_eq!(
            out.get(&1).map(Vec::as_slice),
            Some(&b"got:hello\n"[..]),
            "{out:?}"
        );
        assert!(String::from_utf8_lossy(&out[&3]).contains("Success"));
        // Exec with stdin, stdout, stderr and an exit code.
        let url = c
            .runtime
            .exec(cri::ExecRequest {
                container_id: srv.clone(),
                cmd: vec!["sh".into(), "-c".into(), "cat; echo err >&2; exit 5".into()],
                stdin: true,
                stdout: true,
                stderr: true,
                tty: false,
            })
            .await
            .unwrap()
            .into_inner()
            .url;
        assert!(url.starts_with("http://127.0.0.1:"), "{url}");
        let mut s = stream(&url, &protocols).await.unwrap();
        assert_eq!(s.protocol, "v5.channel.k8s.io");
        s.send(0, b"hello\n").await.unwrap();
        s.send(255, &[0]).await.unwrap();
        let out = s.collect().await.unwrap();
        assert_eq!(
            out.get(&1).map(Vec::as_slice),
            Some(&b"hello\n"[..]),
            "{out:?}"
        );
        assert_eq!(
            out.get(&2).map(Vec::as_slice),
            Some(&b"err\n"[..]),
            "{out:?}"
        );
        let status = String::from_utf8_lossy(&out[&3]).to_string();
        assert!(
            status.contains("NonZeroExitCode") && status.contains(r#""message":"5""#),
            "{status}"
        );
        // A URL is good once.
        let e = stream(&url, &protocols).await.err().unwrap();
        assert!(e.contains("404"), "{e}");

        // Exec with a terminal, resized.
        let url = c
            .runtime
            .exec(cri::ExecRequest {
                container_id: srv.clone(),
                cmd: vec!["sh".into(), "-c".into(), "read x; stty size".into()],
                stdin: true,
                stdout: true,
                stderr: false,
                tty: true,
            })
            .await
            .unwrap()
            .into_inner()
            .url;
        let mut s = stream(&url, &["v4.channel.k8s.io"]).await.unwrap();
        s.send(4, br#"{"Width":100,"Height":40}"#).await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        s.send(0, b"\n").await.unwrap();
        let out = s.collect().await.unwrap();
        let text = String::from_utf8_lossy(&out[&1]).to_string();
        assert!(text.contains("40 100"), "{text:?}");
        assert!(String::from_utf8_lossy(&out[&3]).contains("Success"));

        // Attach to the container's own stdin and stdout.
        let url = c
            .runtime
            .attach(cri::AttachRequest {
                container_id: shell.clone(),
                stdin: true,
                stdout: true,
                stderr: false,
                tty: false,
            })
            .await
            .unwrap()
            .into_inner()
            .url;
        let mut s = stream(&url, &protocols).await.unwrap();
        s.send(0, b"hi\n").await.unwrap();
        let mut seen = Vec::new();
        while let Ok(Ok(Some((ch, data)))) =
            tokio::time::timeout(Duration::from_secs(10), s.recv()).await
        {
            if ch == 1 {
                seen.extend(data);
                if String::from_utf8_lossy(&seen).contains("got:hi") {
                    break;
                }
            }
        }
        assert!(
            String::from_utf8_lossy(&seen).contains("got:hi"),
            "{seen:?}"
        );
        drop(s);

        // Port forwarding to 127.0.0.1:8000 inside the pod.
        let url = c
            .runtime
            .port_forward(cri::PortForwardRequest {
                pod_sandbox_id: pod.clone(),
                port: vec![8000],
            })
            .await
            .unwrap()
            .into_inner()
            .url;
        let mut s = stream(&format!("{url}?port=8000"), &["v4.channel.k8s.io"])
            .await
            .unwrap();
        let mut opened = Vec::new();
        for _ in 0..2 {
            opened.push(s.recv().await.unwrap().unwrap());
        }
        assert_eq!(
            opened,
            vec![
                (0, 8000u16.to_le_bytes().to_vec()),
                (1, 8000u16.to_le_bytes().to_vec())
            ]
        );
        s.send(0, b"ping\n").await.unwrap();
        let mut got = Vec::new();
        while let Ok(Ok(Some((ch, data)))) =
            tokio::time::timeout(Duration::from_secs(10), s.recv()).await
        {
            assert_ne!(ch, 1, "an error: {}", String::from_utf8_lossy(&data));
            got.extend(data);
            if got.ends_with(b"pong\n") {
                break;
            }
        }
        assert_eq!(got, b"pong\n");
        drop(s);
        // A port nobody listens on: the error channel says so.
        let url = c
            .runtime
            .port_forward(cri::PortForwardRequest {
                pod_sandbox_id: pod.clone(),
                port: vec![],
            })
            .await
            .unwrap()
            .into_inner()
            .url;
        let mut s = stream(&format!("{url}?port=8001"), &["v4.channel.k8s.io"])
            .await
            .unwrap();
        let all = s.collect().await.unwrap();
        assert!(
            String::from_utf8_lossy(&all[&1]).contains("8001"),
            "{all:?}"
        );

        // Refusals: SPDY with no protocol, an exec in a stopped container,
        // no stream at all.
        let url = c
            .runtime
            .exec(cri::ExecRequest {
                container_id: srv.clone(),
                cmd: vec!["true".into()],
                stdout: true,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .url;
        let e = stream(&url, &["v4.channel.k8s.io"]).await.map(|_| ());
        assert!(e.is_ok(), "{e:?}");
        let url = c
            .runtime
            .exec(cri::ExecRequest {
                container_id: srv.clone(),
                cmd: vec!["true".into()],
                stdout: true,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .url;
        let host = url
            .strip_prefix("http://")
            .unwrap()
            .split('/')
            .next()
            .unwrap()
            .to_string();
        let path = url.split_once(&host).unwrap().1.to_string();
        let raw = tokio::task::spawn_blocking(move || {
            use std::io::{Read, Write};
            let mut t = std::net::TcpStream::connect(&host).unwrap();
            write!(t, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n\r\n").unwrap();
            let mut out = vec![0u8; 4096];
            let n = t.read(&mut out).unwrap();
            String::from_utf8_lossy(&out[..n]).to_string()
        }).await.unwrap();
        // SPDY without a protocol offered: refused, naming those silo speaks.
        assert!(
            raw.starts_with("HTTP/1.1 403") && raw.contains("v4.channel.k8s.io"),
            "{raw}"
        );
        let e = c
            .runtime
            .exec(cri::ExecRequest {
                container_id: srv.clone(),
                cmd: vec!["true".into()],
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
        c.runtime
            .stop_container(cri::StopContainerRequest {
                container_id: srv.clone(),
                timeout: 0,
            })
            .await
            .unwrap();
        let e = c
            .runtime
            .exec(cri::ExecRequest {
                container_id: srv.clone(),
                cmd: vec!["true".into()],
                stdout: true,
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
        end_pod(&mut c, &pod).await;
    });
}

#[test]
fn a_pod_can_share_one_pid_namespace() {
    let empty = tempfile::tempdir().unwrap();
    let conf = empty.path().to_string_lossy().into_owned();
    let (d, sock) = daemon(&[
        "--cni-conf-dir",
        &conf,
        "--cri-pause-image",
        "silo.test/pause:1",
    ]);
    let ctx = d.dir().join("pause-ctx");
    std::fs::create_dir(&ctx).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox\nENTRYPOINT [\"sleep\", \"2147483647\"]\n",
    )
    .unwrap();
    let logs = d.dir().join("pods");
    rt().block_on(async {
        let mut c = connect(&sock).await.unwrap();
        let mut sandbox = pod_config("shared", &logs);
        let ns = sandbox
            .linux
            .as_mut()
            .unwrap()
            .security_context
            .as_mut()
            .unwrap()
            .namespace_options
            .as_mut()
            .unwrap();
        ns.pid = 0;
        // Without the pause image: a clear error naming it, and no pod left.
        let e = run_pod(&mut c, &sandbox).await.unwrap_err();
        assert!(e.message().contains("silo.test/pause:1"), "{e:?}");
        assert!(c
            .runtime
            .list_pod_sandbox(cri::ListPodSandboxRequest::default())
            .await
            .unwrap()
            .into_inner()
            .items
            .is_empty());
        assert!(d.ok(&["ps", "-aq"]).trim().is_empty());
        d.ok(&[
            "build",
            "-q",
            "-t",
            "silo.test/pause:1",
            ctx.to_str().unwrap(),
        ]);
        let pod = run_pod(&mut c, &sandbox).await.unwrap();
        let mut ids = Vec::new();
        for (name, secs) in [("a", "1000"), ("b", "1001")] {
            let mut cfg = container(name, &["sleep", secs]);
            cfg.linux = Some(cri::LinuxContainerConfig {
                security_context: Some(cri::LinuxContainerSecurityContext {
                    namespace_options: Some(cri::NamespaceOption::default()),
                    ..Default::default()
                }),
                ..Default::default()
            });
            let id = create(&mut c, &pod, &sandbox, cfg).await.unwrap();
            start(&mut c, &id).await;
            ids.push(id);
        }
        let ps = exec(&mut c, &ids[1], &["ps", "-o", "pid,args"], 5)
            .await
            .unwrap();
        let ps = String::from_utf8_lossy(&ps.stdout).to_string();
        assert!(
            ps.contains("sleep 1000") && ps.contains("sleep 1001"),
            "{ps}"
        );
        assert!(
            ps.lines()
                .any(|l| l.trim().starts_with("1 ") && l.contains("sleep 2147483647")),
            "the pause container is PID 1: {ps}"
        );
        // The pause container is the CRI's own business: not listed.
        let listed = c
            .runtime
            .list_containers(cri::ListContainersRequest::default())
            .await
            .unwrap()
            .into_inner()
            .containers;
        assert_eq!(listed.len(), 2);
        end_pod(&mut c, &pod).await;
        assert!(
            d.ok(&["ps", "-aq"]).trim().is_empty(),
            "the pause container went with the pod"
        );
    });
}

#[test]
fn pulls_with_credentials() {
    let reg = silo_testsupport::Registry::start_auth(Some(("kube", "s3cret")));
    let d = Daemon::start_with(Path::new(SILOD), Cli::Docker, &[]);
    d.import_busybox();
    let tag = format!("{}/private/busybox:1", reg.host());
    d.ok(&["login", &reg.host(), "-u", "kube", "-p", "s3cret"]);
    d.ok(&["tag", "busybox", &tag]);
    d.ok(&["push", &tag]);
    d.ok(&["rmi", &tag]);
    d.ok(&["logout", &reg.host()]);
    let sock = d.exec_root().join("cri.sock");
    rt().block_on(async {
        let mut c = connect(&sock).await.unwrap();
        let pull = |auth: Option<cri::AuthConfig>| cri::PullImageRequest {
            image: Some(cri::ImageSpec {
                image: tag.clone(),
                ..Default::default()
            }),
            auth,
            sandbox_config: None,
        };
        let e = c.image.pull_image(pull(None)).await.unwrap_err();
        assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
        let bad = cri::AuthConfig {
            username: "kube".into(),
            password: "wrong".into(),
            ..Default::default()
        };
        let e = c.image.pull_image(pull(Some(bad))).await.unwrap_err();
        assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
        // Docker-style `auth` (base64 of user:password).
        let good = cri::AuthConfig {
            auth: "a3ViZTpzM2NyZXQ=".into(),
            ..Default::default()
        };
        let r = c
            .image
            .pull_image(pull(Some(good)))
            .await
            .unwrap()
            .into_inner();
        assert!(r.image_ref.starts_with("sha256:"), "{r:?}");
    });
}

#[test]
fn cri_pods_survive_a_killed_daemon() {
    let empty = tempfile::tempdir().unwrap();
    let conf = empty.path().to_string_lossy().into_owned();
    let (mut d, sock) = daemon(&["--cni-conf-dir", &conf]);
    let logs = d.dir().join("pods");
    let sandbox = pod_config("durable", &logs);
    let (pod, ctr, ip) = rt().block_on(async {
        let mut c = connect(&sock).await.unwrap();
        let pod = run_pod(&mut c, &sandbox).await.unwrap();
        let ctr = create(
            &mut c,
            &pod,
            &sandbox,
            container(
                "ticker",
                &[
                    "sh",
                    "-c",
                    "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.1; done",
                ],
            ),
        )
        .await
        .unwrap();
        start(&mut c, &ctr).await;
        let st = c
            .runtime
            .pod_sandbox_status(cri::PodSandboxStatusRequest {
                pod_sandbox_id: pod.clone(),
                verbose: false,
            })
            .await
            .unwrap()
            .into_inner();
        (pod, ctr, st.status.unwrap().network.unwrap().ip)
    });
    let log = logs.join("durable/ticker/0.log");
    std::thread::sleep(Duration::from_millis(300));
    d.kill9();
    let before = std::fs::read_to_string(&log).unwrap().lines().count();
    std::thread::sleep(Duration::from_millis(500));
    d.spawn();
    rt().block_on(async {
        let mut c = connect(&sock).await.unwrap();
        // The pod, its address and its container came back as they were.
        let st = c
            .runtime
            .pod_sandbox_status(cri::PodSandboxStatusRequest {
                pod_sandbox_id: pod.clone(),
                verbose: false,
            })
            .await
            .unwrap()
            .into_inner()
            .status
            .unwrap();
        assert_eq!(st.state, cri::PodSandboxState::SandboxReady as i32);
        assert_eq!(st.network.unwrap().ip, ip);
        assert_eq!(
            status(&mut c, &ctr).await.state,
            cri::ContainerState::ContainerRunning as i32
        );
        let r = exec(&mut c, &ctr, &["hostname"], 5).await.unwrap();
        assert_eq!(String::from_utf8_lossy(&r.stdout).trim(), "durable");
        // The log kept growing while silod was away (the monitor writes it).
        let after = std::fs::read_to_string(&log).unwrap();
        assert!(
            after.lines().count() > before,
            "{before} lines before, now:\n{after}"
        );
        let n: Vec<u64> = after
            .lines()
            .filter_map(|l| l.rsplit_once("tick ").and_then(|(_, n)| n.parse().ok()))
            .collect();
        assert!(
            n.windows(2).all(|w| w[1] == w[0] + 1),
            "no line lost: {n:?}"
        );
        end_pod(&mut c, &pod).await;
    });
    no_veths(&d);
}

mod kubeshim;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A real kubectl execs, attaches and port-forwards into a pod over
/// SPDY/3.1, its session relayed to silo's streaming URL by a stand-in for
/// the API server and the kubelet (tests/kubeshim); a kubectl new enough
/// to speak WebSocket does so too.
#[test]
fn kubectl_exec_attach_and_port_forward_over_spdy() {
    let empty = tempfile::tempdir().unwrap();
    let conf = empty.path().to_string_lossy().into_owned();
    let (d, sock) = daemon(&["--cni-conf-dir", &conf]);
    let logs = d.dir().join("pods");
    let sandbox = pod_config("kube", &logs);
    let (pod, srv, shell) = rt().block_on(async {
        let mut c = connect(&sock).await.unwrap();
        let pod = run_pod(&mut c, &sandbox).await.unwrap();
        let srv = create(
            &mut c,
            &pod,
            &sandbox,
            container(
                "srv",
                &["sh", "-c", "while true; do echo pong | nc -l -p 8000; done"],
            ),
        )
        .await
        .unwrap();
        let mut shell_cfg = container("shell", &["sh", "-c", "read line; echo got:$line"]);
        shell_cfg.stdin = true;
        let shell = create(&mut c, &pod, &sandbox, shell_cfg).await.unwrap();
        start(&mut c, &srv).await;
        start(&mut c, &shell).await;
        (pod, srv, shell)
    });
    let shim = kubeshim::Shim::start(
        &d.netns_file(),
        &sock,
        kubeshim::Target {
            name: "kube".into(),
            pod_id: pod.clone(),
            containers: vec![("srv".into(), srv.clone()), ("shell".into(), shell.clone())],
        },
    );
    // A kubectl from 1.30 on tries WebSocket first: these make it SPDY.
    let spdy = [
        ("KUBECTL_REMOTE_COMMAND_WEBSOCKETS", "false"),
        ("KUBECTL_PORT_FORWARD_WEBSOCKETS", "false"),
    ];
    let why = |o: &std::process::Output| {
        format!(
            "status {:?}\nstdout {:?}\nstderr {}\nrequests:\n{}",
            o.status,
            text(&o.stdout),
            text(&o.stderr),
            shim.requests()
        )
    };

    // Output alone.
    let o = shim.run(
        &spdy,
        &["exec", "kube", "-c", "srv", "--", "echo", "probe"],
        b"",
    );
    assert!(o.status.success(), "{}", why(&o));
    assert_eq!(text(&o.stdout), "probe\n", "{}", why(&o));
    // stdin, stdout, stderr and an exit code kubectl passes on.
    let o = shim.run(
        &spdy,
        &[
            "exec",
            "-i",
            "kube",
            "-c",
            "srv",
            "--",
            "sh",
            "-c",
            "cat; echo err >&2; exit 5",
        ],
        b"hello\n",
    );
    assert_eq!(o.status.code(), Some(5), "{}", why(&o));
    assert_eq!(text(&o.stdout), "hello\n", "{}", why(&o));
    assert!(text(&o.stderr).contains("err"), "{}", why(&o));
    // A MiB each way, past SPDY's initial 64 KiB windows.
    let big = vec![b'x'; 1 << 20];
    let o = shim.run(
        &spdy,
        &["exec", "-i", "kube", "-c", "srv", "--", "wc", "-c"],
        &big,
    );
    assert_eq!(text(&o.stdout).trim(), "1048576", "{}", why(&o));
    let o = shim.run(
        &spdy,
        &[
            "exec",
            "kube",
            "-c",
            "srv",
            "--",
            "head",
            "-c",
            "1048576",
            "/dev/zero",
        ],
        b"",
    );
    assert!(o.status.success(), "{}", why(&o));
    assert_eq!(o.stdout.len(), 1 << 20, "{}", text(&o.stderr));
    // A command that does not exist: 127, as from a shell, with the reason.
    let o = shim.run(&spdy, &["exec", "kube", "-c", "srv", "--", "/no/such"], b"");
    assert_eq!(o.status.code(), Some(127), "{}", why(&o));
    assert!(
        text(&o.stdout).contains("\"/no/such\": no such file"),
        "{}",
        why(&o)
    );

    // A terminal: kubectl sends its own size on the resize stream.
    let inner = shim.kubectl_line(
        &spdy,
        &[
            "exec",
            "-it",
            "kube",
            "-c",
            "srv",
            "--",
            "sh",
            "-c",
            "for i in $(seq 100); do s=$(stty size); [ \"$s\" = \"40 100\" ] && break; sleep 0.05; done; echo size:$s",
        ],
    );
    let o = d.in_netns(&[
        "timeout",
        "60",
        "script",
        "-qec",
        &format!("stty rows 40 cols 100; {inner}"),
        "/dev/null",
    ]);
    assert!(text(&o.stdout).contains("size:40 100"), "{}", why(&o));

    // Attach to the shell container's own process.
    let o = shim.run(&spdy, &["attach", "-i", "kube", "-c", "shell"], b"hi\n");
    assert!(text(&o.stdout).contains("got:hi"), "{}", why(&o));

    // Port forwarding: a server in the pod, and a port nobody serves.
    let mut pf = shim
        .kubectl(&spdy, &["port-forward", "kube", "18080:8000", "18081:8001"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(pf.stdout.take().unwrap()));
    let mut said = String::new();
    while !said.contains("127.0.0.1:18081") {
        match lines.next() {
            Some(Ok(l)) => said.push_str(&l),
            _ => break,
        }
    }
    assert!(said.contains("Forwarding from 127.0.0.1:18080"), "{said}");
    assert_eq!(answer_in_netns(&d, "127.0.0.1:18080", "pong"), "pong");
    // Twice: each connection is a new pair of streams.
    assert_eq!(answer_in_netns(&d, "127.0.0.1:18080", "pong"), "pong");
    let refused = d.in_netns(&[
        "timeout",
        "10",
        "bash",
        "-c",
        "exec 3<>/dev/tcp/127.0.0.1/18081; cat <&3",
    ]);
    assert_eq!(silo_testsupport::stdout(&refused), "");
    let _ = pf.kill();
    let pf = pf.wait_with_output().unwrap();
    let err = text(&pf.stderr);
    assert!(
        err.contains("port 8001") && err.to_lowercase().contains("refused"),
        "{err}\nrequests:\n{}",
        shim.requests()
    );

    in_daemon_netns(&d, || spdy_by_hand(&sock, &pod, &srv));

    // All of that was SPDY.
    let seen = shim.requests();
    let upgrades: Vec<&str> = seen.lines().filter(|l| l.contains("pgrade:")).collect();
    assert_eq!(upgrades.len(), 8, "{seen}");
    assert!(
        upgrades.iter().all(|l| l.contains("Upgrade: SPDY/3.1")),
        "{seen}"
    );

    // A kubectl that speaks WebSocket (1.30 on) by default: the same exec.
    if kubeshim::kubectl_minor() >= 30 {
        let o = shim.run(
            &[],
            &[
                "exec",
                "-i",
                "kube",
                "-c",
                "srv",
                "--",
                "sh",
                "-c",
                "cat; echo err >&2; exit 5",
            ],
            b"hello\n",
        );
        assert_eq!(o.status.code(), Some(5), "{}", why(&o));
        assert_eq!(text(&o.stdout), "hello\n", "{}", why(&o));
        assert!(text(&o.stderr).contains("err"), "{}", why(&o));
        let seen = shim.requests();
        assert!(
            seen.lines().last().unwrap().contains("Upgrade: websocket"),
            "{seen}"
        );
    }

    rt().block_on(async {
        let mut c = connect(&sock).await.unwrap();
        end_pod(&mut c, &pod).await;
    });
}

/// SPDY frame by frame, for what kubectl would not send: a refused
/// protocol, a session's exact frames, and broken or abandoned sessions,
/// which start nothing.
async fn spdy_by_hand(sock: &Path, pod: &str, srv: &str) {
    use silo_cri::client::spdy;
    use silo_cri::spdy::{self as s, Frame};
    let mut c = connect(sock).await.unwrap();
    let url = |cmd: &str, stdin: bool| {
        let mut c = c.clone();
        let (srv, cmd) = (srv.to_string(), cmd.to_string());
        async move {
            c.runtime
                .exec(cri::ExecRequest {
                    container_id: srv,
                    cmd: vec!["sh".into(), "-c".into(), cmd],
                    stdin,
                    stdout: true,
                    stderr: true,
                    tty: false,
                })
                .await
                .unwrap()
                .into_inner()
                .url
        }
    };
    // No protocol silo speaks.
    let e = spdy(&url("true", false).await, &["v9.channel.k8s.io"])
        .await
        .err()
        .unwrap();
    assert!(e.contains("403") && e.contains("v4.channel.k8s.io"), "{e}");

    // One exec's whole session.
    let mut x = spdy(
        &url("echo out; echo err >&2; exit 3", false).await,
        &[
            "v9.channel.k8s.io",
            "v4.channel.k8s.io",
            "v3.channel.k8s.io",
        ],
    )
    .await
    .unwrap();
    assert_eq!(x.protocol, "v4.channel.k8s.io");
    for (id, kind) in [(1, "error"), (3, "stdout"), (5, "stderr")] {
        x.open(id, &[("streamtype", kind)]).await.unwrap();
    }
    let (mut replies, mut data, mut fins, mut goaway) =
        (vec![], HashMap::<u32, Vec<u8>>::new(), vec![], false);
    while let Some(f) = x.next().await.unwrap() {
        match f {
            Frame::Control {
                kind: s::SYN_REPLY,
                payload,
                ..
            } => replies.push(s::stream_of(&payload).unwrap()),
            Frame::Control {
                kind: s::GOAWAY, ..
            } => {
                goaway = true;
                break;
            }
            Frame::Data {
                stream,
                flags,
                data: d,
            } => {
                data.entry(stream).or_default().extend(d);
                if flags & s::FLAG_FIN != 0 {
                    fins.push(stream);
                }
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(replies, [1, 3, 5]);
    assert_eq!(data.get(&3).map(Vec::as_slice), Some(&b"out\n"[..]));
    assert_eq!(data.get(&5).map(Vec::as_slice), Some(&b"err\n"[..]));
    let status = String::from_utf8_lossy(&data[&1]).to_string();
    assert!(
        status.contains("NonZeroExitCode") && status.contains(r#""message":"3""#),
        "{status}"
    );
    fins.sort_unstable();
    assert_eq!(fins, [1, 3, 5]);
    assert!(goaway);

    // Broken: an even stream id, an unknown stream type, then a header
    // block that is not zlib. Each is refused; the last ends the session.
    let mut x = spdy(&url("sleep 777", false).await, &["v4.channel.k8s.io"])
        .await
        .unwrap();
    x.open(2, &[("streamtype", "error")]).await.unwrap();
    x.open(1, &[("streamtype", "bogus")]).await.unwrap();
    let mut junk = 3u32.to_be_bytes().to_vec();
    junk.extend_from_slice(&[0; 6]);
    junk.extend_from_slice(b"not a zlib block");
    x.send_raw(&s::control(s::SYN_STREAM, 0, &junk))
        .await
        .unwrap();
    let mut got = vec![];
    while let Ok(Some(f)) = x.next().await {
        if let Frame::Control { kind, payload, .. } = f {
            got.push((kind, u32::from_be_bytes(payload[4..8].try_into().unwrap())));
        }
    }
    assert_eq!(
        got,
        [
            (s::RST_STREAM, s::PROTOCOL_ERROR),
            (s::RST_STREAM, s::PROTOCOL_ERROR),
            (s::GOAWAY, s::GOAWAY_PROTOCOL_ERROR)
        ]
    );
    // Abandoned: the client leaves with one of its three streams open.
    let mut x = spdy(&url("sleep 778", true).await, &["v4.channel.k8s.io"])
        .await
        .unwrap();
    x.open(1, &[("streamtype", "error")]).await.unwrap();
    assert!(matches!(
        x.next().await.unwrap(),
        Some(Frame::Control {
            kind: s::SYN_REPLY,
            ..
        })
    ));
    drop(x);
    // Flooding: more stdin than may wait before the streams are all open.
    let mut x = spdy(&url("sleep 779", true).await, &["v4.channel.k8s.io"])
        .await
        .unwrap();
    x.open(1, &[("streamtype", "error")]).await.unwrap();
    x.open(3, &[("streamtype", "stdin")]).await.unwrap();
    for _ in 0..200 {
        x.send_raw(&s::data(3, 0, b"x")).await.unwrap();
    }
    let mut status = Vec::new();
    while let Ok(Some(f)) = x.next().await {
        match f {
            Frame::Data {
                stream: 1, data, ..
            } => status.extend(data),
            Frame::Control {
                kind: s::GOAWAY, ..
            } => break,
            _ => {}
        }
    }
    let status = text(&status);
    assert!(status.contains("more input than it may"), "{status}");
    // None of these commands ran.
    let ps = exec(&mut c, srv, &["ps", "-o", "args"], 10).await.unwrap();
    let ps = text(&ps.stdout);
    assert!(!ps.contains("sleep 77"), "{ps}");

    // Port forwarding by hand: a request id too long is refused; a pair
    // of streams reaches the server in the pod, and both end with it.
    let url = c
        .runtime
        .port_forward(cri::PortForwardRequest {
            pod_sandbox_id: pod.into(),
            port: vec![],
        })
        .await
        .unwrap()
        .into_inner()
        .url;
    let mut x = spdy(&url, &["portforward.k8s.io"]).await.unwrap();
    assert_eq!(x.protocol, "portforward.k8s.io");
    let long = "9".repeat(100);
    for (id, kind, request) in [
        (1, "error", long.as_str()),
        (3, "error", "0"),
        (5, "data", "0"),
    ] {
        let h = [
            ("streamtype", kind),
            ("port", "8000"),
            ("requestid", request),
        ];
        x.open(id, &h).await.unwrap();
    }
    let (mut resets, mut replies, mut got, mut fins) = (vec![], vec![], Vec::new(), vec![]);
    while fins.len() < 2 {
        match x.next().await.unwrap().expect("the session ended early") {
            Frame::Control {
                kind: s::RST_STREAM,
                payload,
                ..
            } => resets.push(s::stream_of(&payload).unwrap()),
            Frame::Control {
                kind: s::SYN_REPLY,
                payload,
                ..
            } => replies.push(s::stream_of(&payload).unwrap()),
            Frame::Data {
                stream,
                flags,
                data,
            } => {
                if stream == 5 {
                    got.extend(data);
                }
                if flags & s::FLAG_FIN != 0 {
                    fins.push(stream);
                }
            }
            _ => {}
        }
    }
    assert_eq!((resets, replies), (vec![1], vec![3, 5]));
    assert_eq!(text(&got), "pong\n");
    fins.sort_unstable();
    assert_eq!(fins, [3, 5]);
}
