//! Times one pod's life through a CRI socket, as the kubelet drives it:
//! RunPodSandbox, CreateContainer, StartContainer, StopPodSandbox,
//! RemovePodSandbox (one busybox container). Used by bench/cri.sh against
//! silo and containerd alike.
//!
//! usage: cri-bench SOCKET IMAGE RUNS [LOG_DIR]   (prints one ms figure per run)
#![allow(clippy::unwrap_used)]

use silo_cri::proto as cri;
use std::time::Instant;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        return Err("usage: cri-bench SOCKET IMAGE RUNS [LOG_DIR]".into());
    }
    let mut c = silo_cri::client::connect(&args[1]).await?;
    let image = args[2].clone();
    let runs: u32 = args[3].parse()?;
    let log_dir = args.get(4).cloned().unwrap_or_default();
    for i in 0..runs {
        let uid = format!("bench-{}-{i}", std::process::id());
        let config = cri::PodSandboxConfig {
            metadata: Some(cri::PodSandboxMetadata {
                name: format!("b{i}"),
                uid: uid.clone(),
                namespace: "bench".into(),
                attempt: 0,
            }),
            hostname: format!("b{i}"),
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
        };
        let t = Instant::now();
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
                        image: image.clone(),
                        ..Default::default()
                    }),
                    command: vec!["sleep".into(), "1000".into()],
                    log_path: if log_dir.is_empty() {
                        String::new()
                    } else {
                        "c/0.log".into()
                    },
                    ..Default::default()
                }),
                sandbox_config: Some(config),
            })
            .await?
            .into_inner()
            .container_id;
        c.runtime
            .start_container(cri::StartContainerRequest { container_id: ctr })
            .await?;
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
        println!("{:.2}", t.elapsed().as_secs_f64() * 1000.0);
    }
    Ok(())
}
