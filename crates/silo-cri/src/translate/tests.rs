//! Unit tests of the CRI translation.
#![allow(clippy::unwrap_used)]

use super::*;

struct FakeHost {
    lower_oom: bool,
}

impl Host for FakeHost {
    fn device(&self, host: &str, inside: &str) -> Result<silo_oci::Device, String> {
        if host == "/dev/null" {
            Ok(silo_oci::Device {
                typ: "c".into(),
                path: inside.into(),
                major: 1,
                minor: 3,
                file_mode: Some(0o666),
                uid: Some(0),
                gid: Some(0),
            })
        } else {
            Err(format!("{host}: no such device"))
        }
    }
    fn read_profile(&self, path: &str) -> Result<Vec<u8>, String> {
        if path == "/p.json" {
            Ok(br#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir"],"action":"SCMP_ACT_ERRNO"}]}"#.to_vec())
        } else if path == "/bad.json" {
            Ok(b"{nope".to_vec())
        } else {
            Err(format!("seccomp profile {path}: No such file or directory"))
        }
    }
    fn may_lower_oom_score(&self) -> bool {
        self.lower_oom
    }
}

fn sandbox() -> cri::PodSandboxConfig {
    cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: "web".into(),
            uid: "u1".into(),
            namespace: "ns".into(),
            attempt: 2,
        }),
        log_directory: "/var/log/pods/ns_web_u1".into(),
        ..Default::default()
    }
}

fn image() -> silo_storage::Image {
    let mut i = silo_storage::Image {
        id: "sha256:11".into(),
        repo_tags: vec!["busybox:latest".into()],
        created: String::new(),
        size: 1,
        config: Default::default(),
        diff_ids: vec![],
        repo_digests: vec![],
    };
    i.config.config.entrypoint = Some(vec!["/entry".into()]);
    i.config.config.cmd = Some(vec!["default".into()]);
    i.config.config.env = Some(vec!["PATH=/bin".into(), "A=image".into()]);
    i.config.config.working_dir = Some("/work".into());
    i
}

fn ctr() -> cri::ContainerConfig {
    cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata {
            name: "app".into(),
            attempt: 1,
        }),
        image: Some(cri::ImageSpec {
            image: "busybox".into(),
            ..Default::default()
        }),
        log_path: "app/1.log".into(),
        ..Default::default()
    }
}

fn translate(c: &cri::ContainerConfig) -> Result<ContainerConfig, Refused> {
    let (_, rec) = pod_config(&sandbox()).unwrap();
    container_config(
        c,
        "pod1",
        &rec,
        None,
        &image(),
        &FakeHost { lower_oom: false },
    )
    .map(|(c, _)| c)
}

#[test]
fn argv_follows_kubernetes_command_and_args() {
    let img = image();
    let mut c = ctr();
    assert_eq!(argv(&c, &img.config), ["/entry", "default"]);
    c.args = vec!["x".into()];
    assert_eq!(argv(&c, &img.config), ["/entry", "x"]);
    c.command = vec!["sh".into()];
    assert_eq!(argv(&c, &img.config), ["sh", "x"]);
    c.args.clear();
    assert_eq!(argv(&c, &img.config), ["sh"]);
}

#[test]
fn a_pod_config_maps_names_namespaces_ports_and_dns() {
    let mut s = sandbox();
    s.port_mappings = vec![
        cri::PortMapping {
            protocol: 1,
            container_port: 53,
            host_port: 5353,
            host_ip: "127.0.0.1".into(),
        },
        cri::PortMapping {
            protocol: 0,
            container_port: 80,
            host_port: 0,
            host_ip: String::new(),
        },
    ];
    s.dns_config = Some(cri::DnsConfig {
        servers: vec!["10.96.0.10".into()],
        searches: vec!["ns.svc.cluster.local".into()],
        options: vec!["ndots:5".into()],
    });
    let (p, r) = pod_config(&s).unwrap();
    assert_eq!(p.name, "k8s_POD_web_ns_u1_2");
    assert_eq!(p.network, NetworkMode::Default);
    assert_eq!(
        p.ports.len(),
        1,
        "a containerPort without hostPort publishes nothing"
    );
    assert_eq!(p.ports[0].host_first, 5353);
    assert_eq!(p.dns.search, ["ns.svc.cluster.local"]);
    assert!(!r.host_pid && !p.host_ipc);
    // Host namespaces.
    s.port_mappings.clear();
    s.linux = Some(cri::LinuxPodSandboxConfig {
        security_context: Some(cri::LinuxSandboxSecurityContext {
            namespace_options: Some(cri::NamespaceOption {
                network: 2,
                pid: 2,
                ipc: 2,
                ..Default::default()
            }),
            ..Default::default()
        }),
        cgroup_parent: "/kubepods/besteffort/podu1".into(),
        ..Default::default()
    });
    let (p, r) = pod_config(&s).unwrap();
    assert_eq!(p.network, NetworkMode::Host);
    assert!(p.host_ipc && r.host_pid);
    assert_eq!(
        r.cgroup_parent.as_deref(),
        Some("/kubepods/besteffort/podu1")
    );
    // Refusals name the field.
    s.linux
        .as_mut()
        .unwrap()
        .security_context
        .as_mut()
        .unwrap()
        .namespace_options
        .as_mut()
        .unwrap()
        .pid = 0;
    let e = pod_config(&s).unwrap_err();
    assert!(
        e.field == "namespace_options.pid" && e.message.contains("own network"),
        "{e}"
    );
    let (_, r) = pod_config(&sandbox()).unwrap();
    assert!(!r.shared_pid);
    s.linux.as_mut().unwrap().security_context = None;
    s.linux.as_mut().unwrap().cgroup_parent = "kubepods.slice".into();
    assert_eq!(pod_config(&s).unwrap_err().field, "linux.cgroup_parent");
    let mut bad = sandbox();
    bad.dns_config = Some(cri::DnsConfig {
        servers: vec!["not-an-ip".into()],
        ..Default::default()
    });
    assert_eq!(pod_config(&bad).unwrap_err().field, "dns_config.servers");
    bad.metadata = None;
    assert_eq!(pod_config(&bad).unwrap_err().field, "metadata");
    let mut bad = sandbox();
    bad.log_directory = "/var/log/pods/../../etc".into();
    assert_eq!(pod_config(&bad).unwrap_err().field, "log_directory");
}

#[test]
fn a_container_config_maps_the_process_and_its_sandbox() {
    let mut c = ctr();
    c.envs = vec![cri::KeyValue {
        key: "A".into(),
        value: "mine".into(),
    }];
    c.mounts = vec![cri::Mount {
        container_path: "/data".into(),
        host_path: "/srv/data".into(),
        readonly: true,
        propagation: 1,
        ..Default::default()
    }];
    c.devices = vec![cri::Device {
        container_path: "/dev/xnull".into(),
        host_path: "/dev/null".into(),
        permissions: "rwm".into(),
    }];
    c.linux = Some(cri::LinuxContainerConfig {
        resources: Some(cri::LinuxContainerResources {
            cpu_shares: 512,
            cpu_quota: 50000,
            cpu_period: 100000,
            memory_limit_in_bytes: 1 << 30,
            oom_score_adj: -999,
            ..Default::default()
        }),
        security_context: Some(cri::LinuxContainerSecurityContext {
            run_as_username: "nobody".into(),
            run_as_group: Some(cri::Int64Value { value: 7 }),
            masked_paths: vec!["/proc/kcore".into()],
            seccomp: Some(cri::SecurityProfile {
                profile_type: 2,
                localhost_ref: "/p.json".into(),
            }),
            ..Default::default()
        }),
    });
    let cfg = translate(&c).unwrap();
    assert_eq!(cfg.process.env, ["PATH=/bin", "A=mine"]);
    assert_eq!(cfg.process.cwd, "/work");
    assert_eq!(cfg.process.user, "nobody:7");
    assert_eq!(
        cfg.process.oom_score_adj,
        Some(0),
        "clamped without CAP_SYS_RESOURCE"
    );
    assert_eq!(cfg.pod.as_deref(), Some("pod1"));
    assert_eq!(
        cfg.log.cri_path.as_deref(),
        Some(std::path::Path::new("/var/log/pods/ns_web_u1/app/1.log"))
    );
    assert!(
        matches!(&cfg.mounts[0], MountRequest::Bind { readonly: true, propagation, .. } if propagation == "rslave")
    );
    assert_eq!(cfg.devices[0].path, "/dev/xnull");
    let cpu = cfg.resources.cpu.clone().unwrap();
    assert_eq!(
        (cpu.shares, cpu.quota, cpu.period),
        (Some(512), Some(50000), Some(100000))
    );
    assert_eq!(cfg.resources.memory.unwrap().limit, Some(1 << 30));
    assert_eq!(
        cfg.security.masked_paths.as_deref(),
        Some(&["/proc/kcore".to_string()][..])
    );
    assert!(
        cfg.security.readonly_paths.is_none(),
        "an empty list keeps the defaults"
    );
    assert!(matches!(cfg.security.seccomp, SeccompPolicy::Profile(_)));
    // With CAP_SYS_RESOURCE the value is kept.
    let (_, rec) = pod_config(&sandbox()).unwrap();
    let (kept, _) =
        container_config(&c, "p", &rec, None, &image(), &FakeHost { lower_oom: true }).unwrap();
    assert_eq!(kept.process.oom_score_adj, Some(-999));
}

#[test]
fn a_shared_pid_namespace_joins_the_pause_container() {
    let mut s = sandbox();
    s.linux = Some(cri::LinuxPodSandboxConfig {
        security_context: Some(cri::LinuxSandboxSecurityContext {
            namespace_options: Some(cri::NamespaceOption::default()),
            ..Default::default()
        }),
        ..Default::default()
    });
    let (_, rec) = pod_config(&s).unwrap();
    assert!(rec.shared_pid);
    let mut c = ctr();
    c.linux = Some(cri::LinuxContainerConfig {
        security_context: Some(cri::LinuxContainerSecurityContext {
            namespace_options: Some(cri::NamespaceOption::default()),
            ..Default::default()
        }),
        ..Default::default()
    });
    let host = FakeHost { lower_oom: false };
    let (cfg, _) = container_config(&c, "p", &rec, Some("pause1"), &image(), &host).unwrap();
    assert_eq!(cfg.namespaces.pid, Sharing::Container("pause1".into()));
    let e = container_config(&c, "p", &rec, None, &image(), &host).unwrap_err();
    assert_eq!(e.field, "namespace_options.pid");
}

#[test]
fn capabilities_drop_then_add_and_unknown_ones_are_refused() {
    let mut c = ctr();
    let caps = |add: &[&str], drop: &[&str]| cri::LinuxContainerConfig {
        security_context: Some(cri::LinuxContainerSecurityContext {
            capabilities: Some(cri::Capability {
                add_capabilities: add.iter().map(|s| s.to_string()).collect(),
                drop_capabilities: drop.iter().map(|s| s.to_string()).collect(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    c.linux = Some(caps(&["net_raw"], &["ALL"]));
    assert_eq!(translate(&c).unwrap().process.capabilities, ["CAP_NET_RAW"]);
    c.linux = Some(caps(&["SYS_ADMIN"], &["CHOWN"]));
    let got = translate(&c).unwrap().process.capabilities;
    assert!(got.contains(&"CAP_SYS_ADMIN".to_string()) && !got.contains(&"CAP_CHOWN".to_string()));
    c.linux = Some(caps(&["BOGUS"], &[]));
    assert_eq!(
        translate(&c).unwrap_err().field,
        "capabilities.add_capabilities"
    );
}

#[test]
fn bad_container_configs_are_refused_by_name() {
    let with_sc = |sc: cri::LinuxContainerSecurityContext| {
        let mut c = ctr();
        c.linux = Some(cri::LinuxContainerConfig {
            security_context: Some(sc),
            ..Default::default()
        });
        translate(&c).unwrap_err()
    };
    let e = with_sc(cri::LinuxContainerSecurityContext {
        seccomp: Some(cri::SecurityProfile {
            profile_type: 2,
            localhost_ref: "/missing.json".into(),
        }),
        ..Default::default()
    });
    assert!(e.message.contains("/missing.json"), "{e}");
    let e = with_sc(cri::LinuxContainerSecurityContext {
        seccomp: Some(cri::SecurityProfile {
            profile_type: 2,
            localhost_ref: "/bad.json".into(),
        }),
        ..Default::default()
    });
    assert!(e.message.contains("/bad.json"), "{e}");
    let e = with_sc(cri::LinuxContainerSecurityContext {
        apparmor: Some(cri::SecurityProfile {
            profile_type: 2,
            localhost_ref: "my-profile".into(),
        }),
        ..Default::default()
    });
    assert_eq!(e.field, "security_context.apparmor");
    let e = with_sc(cri::LinuxContainerSecurityContext {
        privileged: true,
        ..Default::default()
    });
    assert!(e.message.contains("privileged pod"), "{e}");
    // RuntimeDefault and Unconfined AppArmor are accepted (no AppArmor here).
    let mut c = ctr();
    c.linux = Some(cri::LinuxContainerConfig {
        security_context: Some(cri::LinuxContainerSecurityContext {
            apparmor: Some(cri::SecurityProfile {
                profile_type: 0,
                localhost_ref: String::new(),
            }),
            ..Default::default()
        }),
        ..Default::default()
    });
    assert_eq!(
        translate(&c).unwrap().security.seccomp,
        SeccompPolicy::Unconfined
    );
    let mut c = ctr();
    c.devices = vec![cri::Device {
        container_path: "/dev/x".into(),
        host_path: "/dev/nosuch".into(),
        permissions: "rwm".into(),
    }];
    assert_eq!(translate(&c).unwrap_err().field, "devices");
    for bad in ["/etc/passwd", "../../x.log", "a/../../b"] {
        let mut c = ctr();
        c.log_path = bad.into();
        assert_eq!(translate(&c).unwrap_err().field, "log_path", "{bad}");
    }
    let mut c = ctr();
    c.mounts = vec![cri::Mount {
        container_path: "rel".into(),
        host_path: "/x".into(),
        ..Default::default()
    }];
    assert_eq!(translate(&c).unwrap_err().field, "mounts");
    let mut c = ctr();
    c.mounts = vec![cri::Mount {
        container_path: "/d".into(),
        host_path: "/x".into(),
        readonly: true,
        recursive_read_only: true,
        ..Default::default()
    }];
    assert!(translate(&c)
        .unwrap_err()
        .message
        .contains("recursive read-only"));
    let mut c = ctr();
    c.mounts = vec![cri::Mount {
        container_path: "/d".into(),
        host_path: "/x".into(),
        selinux_relabel: true,
        ..Default::default()
    }];
    assert_eq!(translate(&c).unwrap_err().field, "mounts.selinux_relabel");
    let e = with_sc(cri::LinuxContainerSecurityContext {
        supplemental_groups_policy: 1,
        ..Default::default()
    });
    assert_eq!(e.field, "security_context.supplemental_groups_policy");
    let mut c = ctr();
    c.linux = Some(cri::LinuxContainerConfig {
        resources: Some(cri::LinuxContainerResources {
            unified: [("memory.high".to_string(), "1".to_string())].into(),
            ..Default::default()
        }),
        ..Default::default()
    });
    assert_eq!(translate(&c).unwrap_err().field, "resources.unified");
}
