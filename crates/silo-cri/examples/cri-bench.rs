//! Times what the kubelet asks of a CRI runtime, against silo and
//! containerd alike (bench/cri.sh):
//!
//! - one pod's life: RunPodSandbox, CreateContainer, StartContainer,
//!   StopPodSandbox, RemovePodSandbox (one busybox container);
//! - `exec`: one `echo` through the streaming server over SPDY/3.1, as
//!   `kubectl exec` reaches it through a node: the Exec call, the upgrade,
//!   the streams, until the server's GOAWAY.
//!
//! usage: cri-bench SOCKET IMAGE RUNS [LOG_DIR]
//!        cri-bench exec SOCKET IMAGE RUNS
//! (prints one ms figure per run)
#![allow(clippy::unwrap_used)]

use silo_cri::client::Client;
use silo_cri::proto as cri;
use std::time::Instant;

type Error = Box<dyn std::error::Error>;

fn pod_config(uid: &str, name: &str, log_dir: &str) -> cri::PodSandboxConfig {
    cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: name.into(),
            uid: uid.into(),
            namespace: "bench".into(),
            attempt: 0,
        }),
        hostname: name.into(),
        log_directory: if log_dir.is_empty() {
            String::new()
        } else {
            format!("{log_dir}/{uid}")
        },
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

/// RunPodSandbox, CreateContainer (`sleep`), StartContainer: the pod's and
/// the container's ids.
async fn start_pod(
    c: &mut Client,
    config: &cri::PodSandboxConfig,
    image: &str,
) -> Result<(String, String), Error> {
    let pod = c
        .runtime
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: String::new(),
        })
        .await?
        .into_inner()
        .pod_sandbox_id;
    let ctr = c
        .runtime
        .create_container(cri::CreateContainerRequest {
            pod_sandbox_id: pod.clone(),
            config: Some(cri::ContainerConfig {
                metadata: Some(cri::ContainerMetadata {
                    name: "c".into(),
                    attempt: 0,
                }),
                image: Some(cri::ImageSpec {
                    image: image.into(),
                    ..Default::default()
                }),
                command: vec!["sleep".into(), "1000".into()],
                log_path: if config.log_directory.is_empty() {
                    String::new()
                } else {
                    "c/0.log".into()
                },
                ..Default::default()
            }),
            sandbox_config: Some(config.clone()),
        })
        .await?
        .into_inner()
        .container_id;
    c.runtime
        .start_container(cri::StartContainerRequest {
            container_id: ctr.clone(),
        })
        .await?;
    Ok((pod, ctr))
}

async fn end_pod(c: &mut Client, pod: String) -> Result<(), Error> {
    c.runtime
        .stop_pod_sandbox(cri::StopPodSandboxRequest {
            pod_sandbox_id: pod.clone(),
        })
        .await?;
    c.runtime
        .remove_pod_sandbox(cri::RemovePodSandboxRequest {
            pod_sandbox_id: pod,
        })
        .await?;
    Ok(())
}

/// One `echo hi` over SPDY, to the server's GOAWAY; Err unless it printed.
async fn spdy_exec(c: &mut Client, ctr: &str) -> Result<(), Error> {
    use silo_cri::spdy::{Frame, GOAWAY};
    let url = c
        .runtime
        .exec(cri::ExecRequest {
            container_id: ctr.into(),
            cmd: vec!["echo".into(), "hi".into()],
            stdout: true,
            stderr: true,
            ..Default::default()
        })
        .await?
        .into_inner()
        .url;
    let mut s = silo_cri::client::spdy(&url, &["v4.channel.k8s.io"]).await?;
    for (id, kind) in [(1, "error"), (3, "stdout"), (5, "stderr")] {
        s.open(id, &[("streamtype", kind)]).await?;
    }
    let mut out = Vec::new();
    while let Some(f) = s.next().await? {
        match f {
            Frame::Data {
                stream: 3, data, ..
            } => out.extend(data),
            Frame::Control { kind: GOAWAY, .. } => break,
            _ => {}
        }
    }
    if out != b"hi\n" {
        return Err(format!("the exec printed {:?}", String::from_utf8_lossy(&out)).into());
    }
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let exec = args.first().is_some_and(|a| a == "exec");
    if exec {
        args.remove(0);
    }
    if args.len() < 3 {
        return Err("usage: cri-bench [exec] SOCKET IMAGE RUNS [LOG_DIR]".into());
    }
    let mut c = silo_cri::client::connect(&args[0]).await?;
    let image = args[1].clone();
    let runs: u32 = args[2].parse()?;
    let log_dir = args.get(3).cloned().unwrap_or_default();
    if exec {
        let uid = format!("bench-exec-{}", std::process::id());
        let (pod, ctr) = start_pod(&mut c, &pod_config(&uid, "e", ""), &image).await?;
        for _ in 0..runs {
            let t = Instant::now();
            spdy_exec(&mut c, &ctr).await?;
            println!("{:.2}", t.elapsed().as_secs_f64() * 1000.0);
        }
        return end_pod(&mut c, pod).await;
    }
    for i in 0..runs {
        let uid = format!("bench-{}-{i}", std::process::id());
        let config = pod_config(&uid, &format!("b{i}"), &log_dir);
        let t = Instant::now();
        let (pod, _) = start_pod(&mut c, &config, &image).await?;
        end_pod(&mut c, pod).await?;
        println!("{:.2}", t.elapsed().as_secs_f64() * 1000.0);
    }
    Ok(())
}
