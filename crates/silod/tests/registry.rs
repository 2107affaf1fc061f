//! Pull, push and login against a real registry (Debian's docker-registry on
//! 127.0.0.1) with the docker CLI: round trips, digests, basic auth, a
//! Docker Hub mirror, a blob cut mid-download and resumed, and registries
//! that fail in the ways the images issue lists, each leaving nothing behind.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use silo_oci::image::{media, Descriptor, Index, Manifest, Platform};
use silo_oci::reference::Reference;
use silo_testsupport::{stderr, Cli, Daemon, Fault, Proxy, Registry};
use std::path::Path;

const SILOD: &str = env!("CARGO_BIN_EXE_silod");

fn daemon(extra: &[&str]) -> Daemon {
    Daemon::start_with(Path::new(SILOD), Cli::Docker, extra)
}

/// Imports busybox and pushes it as `<host>/<name>`.
fn push_busybox(d: &Daemon, target: &str) {
    d.import_busybox();
    d.ok(&["tag", "busybox:latest", target]);
    let out = d.ok(&["push", target]);
    assert!(out.contains("digest: sha256:"), "{out}");
}

/// Image ids, layer directories and stored blobs of a daemon (partial
/// downloads, which a retry resumes, excluded).
fn stored(d: &Daemon) -> (Vec<String>, Vec<String>, Vec<String>) {
    let list = |p: &Path| -> Vec<String> {
        std::fs::read_dir(p)
            .map(|r| {
                let mut v: Vec<String> = r
                    .flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| !n.starts_with(".tmp-"))
                    .collect();
                v.sort();
                v
            })
            .unwrap_or_default()
    };
    let storage = d.data_root().join("storage");
    (
        list(&storage.join("images")),
        list(&storage.join("layers")),
        list(&storage.join("blobs/sha256")),
    )
}

fn manifest_of(registry: &str, repo: &str, tag: &str) -> Manifest {
    let client = silo_registry::Client::new(Default::default());
    let r = Reference::parse(&format!("{registry}/{repo}:{tag}")).unwrap();
    let repo = client.repository(&r, None, false).unwrap();
    serde_json::from_slice(&repo.manifest(tag).unwrap().bytes).unwrap()
}

#[test]
fn push_then_pull_runs_and_keeps_digests() {
    let reg = Registry::start();
    let d = daemon(&[]);
    let name = format!("{}/bb:1", reg.host());
    push_busybox(&d, &name);
    let digest = d.ok(&["image", "inspect", "-f", "{{index .RepoDigests 0}}", &name]);
    assert!(
        digest
            .trim()
            .starts_with(&format!("{}/bb@sha256:", reg.host())),
        "{digest}"
    );

    // A second daemon pulls it by tag and runs it.
    let d2 = daemon(&[]);
    let out = d2.ok(&["pull", &name]);
    assert!(out.contains("Pull complete"), "{out}");
    assert!(out.contains("Downloaded newer image"), "{out}");
    assert_eq!(
        d2.ok(&["run", "--rm", "--network", "none", &name, "echo", "pulled"])
            .trim(),
        "pulled"
    );
    assert_eq!(
        d2.ok(&["image", "inspect", "-f", "{{index .RepoDigests 0}}", &name]),
        digest
    );
    // Same id on both sides: the config bytes went through unchanged.
    assert_eq!(
        d.ok(&["image", "inspect", "-f", "{{.Id}}", &name]),
        d2.ok(&["image", "inspect", "-f", "{{.Id}}", &name])
    );
    // Again: up to date, nothing downloaded.
    let again = d2.ok(&["pull", &name]);
    assert!(again.contains("Image is up to date"), "{again}");
    // By digest, on a third daemon.
    let d3 = daemon(&[]);
    let out = d3.ok(&["pull", digest.trim()]);
    assert!(out.contains("Pull complete"), "{out}");
    let ids = d3.ok(&[
        "images",
        "--digests",
        "--format",
        "{{.Repository}} {{.Digest}}",
    ]);
    assert!(
        ids.contains(&digest.trim()[digest.find('@').unwrap() + 1..]),
        "{ids}"
    );
    // rmi removes the digest reference and the blobs with the image.
    d3.ok(&["rmi", digest.trim()]);
    let (images, layers, blobs) = stored(&d3);
    assert!(
        images.is_empty() && layers.is_empty() && blobs.is_empty(),
        "{images:?} {layers:?} {blobs:?}"
    );
}

#[test]
fn an_unknown_tag_or_repository_is_a_clear_error_and_stores_nothing() {
    let reg = Registry::start();
    let d = daemon(&[]);
    push_busybox(&d, &format!("{}/bb:1", reg.host()));
    let d2 = daemon(&[]);
    for bad in [
        format!("{}/bb:nope", reg.host()),
        format!("{}/nothing:1", reg.host()),
    ] {
        let out = d2.cli(&["pull", &bad]);
        assert!(!out.status.success());
        let e = stderr(&out);
        assert!(e.contains("not found"), "{bad}: {e}");
    }
    let (images, layers, blobs) = stored(&d2);
    assert!(images.is_empty() && layers.is_empty() && blobs.is_empty());
}

#[test]
fn login_with_basic_auth_then_push_and_pull() {
    let reg = Registry::start_auth(Some(("silo", "s3cret")));
    let d = daemon(&[]);
    d.import_busybox();
    let name = format!("{}/private/bb:1", reg.host());
    d.ok(&["tag", "busybox:latest", &name]);
    let out = d.cli(&["push", &name]);
    assert!(!out.status.success(), "push without login succeeded");
    assert!(
        stderr(&out).contains("authentication required"),
        "{}",
        stderr(&out)
    );
    let out = d.cli(&["login", "-u", "silo", "-p", "wrong", &reg.host()]);
    assert!(!out.status.success(), "a wrong password logged in");
    let out = d.ok(&["login", "-u", "silo", "-p", "s3cret", &reg.host()]);
    assert!(out.contains("Login Succeeded"), "{out}");
    d.ok(&["push", &name]);
    d.ok(&["rmi", &name]);
    let out = d.ok(&["pull", &name]);
    assert!(
        out.contains("Pull complete") || out.contains("Already exists"),
        "{out}"
    );
}

#[test]
fn docker_hub_pulls_go_to_the_mirror() {
    let reg = Registry::start();
    let d = daemon(&[]);
    push_busybox(&d, &format!("{}/library/busybox:mirrored", reg.host()));
    let mirror = format!("http://{}", reg.host());
    let d2 = daemon(&["--registry-mirror", &mirror]);
    let out = d2.ok(&["pull", "busybox:mirrored"]);
    assert!(out.contains("Pull complete"), "{out}");
    let tags = d2.ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert_eq!(tags.trim(), "busybox:mirrored");
}

#[test]
fn a_blob_cut_mid_download_resumes_with_a_range_request() {
    let reg = Registry::start();
    let d = daemon(&[]);
    push_busybox(&d, &format!("{}/bb:1", reg.host()));
    let proxy = Proxy::start(reg.port(), Fault::CutOnce(100_000));
    let d2 = daemon(&[]);
    let name = format!("{}/bb:1", proxy.host());
    let out = d2.ok(&["pull", &name]);
    assert!(out.contains("Pull complete"), "{out}");
    let seen = proxy.seen();
    assert!(
        seen.iter()
            .any(|h| h.to_ascii_lowercase().contains("range: bytes=100000-")),
        "no range request: {seen:#?}"
    );
    assert_eq!(
        d2.ok(&["run", "--rm", "--network", "none", &name, "echo", "resumed"])
            .trim(),
        "resumed"
    );
}

#[test]
fn failing_registries_leave_nothing_behind() {
    let reg = Registry::start();
    let d = daemon(&[]);
    push_busybox(&d, &format!("{}/bb:1", reg.host()));
    let layer = manifest_of(&reg.host(), "bb", "1").layers[0].digest.clone();
    for (fault, expect) in [
        (Fault::Status(500), "500"),
        (Fault::Status(401), "authentication required"),
        (Fault::Corrupt, "digest"),
        (Fault::Missing(layer), "blob unknown"),
    ] {
        let proxy = Proxy::start(reg.port(), fault.clone());
        let d2 = daemon(&[]);
        let out = d2.cli(&["pull", &format!("{}/bb:1", proxy.host())]);
        assert!(!out.status.success(), "{fault:?}: pull succeeded");
        assert!(stderr(&out).contains(expect), "{fault:?}: {}", stderr(&out));
        let (images, layers, blobs) = stored(&d2);
        assert!(
            images.is_empty() && layers.is_empty() && blobs.is_empty(),
            "{fault:?}: left {images:?} {layers:?} {blobs:?}"
        );
        assert!(d2.ok(&["images", "-q"]).trim().is_empty());
    }
}

/// Uploads `bytes` as a blob of repository `repo`.
fn upload(repo: &silo_registry::Repository<'_>, bytes: &[u8]) -> Descriptor {
    let digest = silo_oci::image::sha256_digest(bytes);
    repo.upload_blob(&digest, bytes.len() as u64, &mut &bytes[..])
        .unwrap();
    Descriptor::new(media::OCI_LAYER_GZIP, &digest, bytes.len() as u64)
}

#[test]
fn bad_images_in_a_registry_are_refused_with_their_reason() {
    let reg = Registry::start();
    let client = silo_registry::Client::new(Default::default());
    let r = Reference::parse(&format!("{}/bad:x", reg.host())).unwrap();
    let repo = client.repository(&r, None, true).unwrap();
    // A "gzip" layer whose stream is corrupt.
    let mut corrupt = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3];
    corrupt.extend(std::iter::repeat_n(0x5a, 4096));
    let layer = upload(&repo, &corrupt);
    let config = format!(
        r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":["sha256:{}"]}}}}"#,
        "ab".repeat(32)
    );
    let mut cfg = upload(&repo, config.as_bytes());
    cfg.media_type = media::OCI_CONFIG.to_string();
    let manifest = Manifest {
        schema_version: 2,
        media_type: Some(media::OCI_MANIFEST.into()),
        config: cfg,
        layers: vec![layer],
        annotations: Default::default(),
    };
    let mbytes = serde_json::to_vec(&manifest).unwrap();
    let mdigest = repo
        .put_manifest("gzip", media::OCI_MANIFEST, &mbytes)
        .unwrap();
    // An index that only serves another platform.
    let mut entry = Descriptor::new(media::OCI_MANIFEST, &mdigest, mbytes.len() as u64);
    entry.platform = Some(Platform::parse("linux/s390x").unwrap());
    let index = Index {
        schema_version: 2,
        media_type: Some(media::OCI_INDEX.into()),
        manifests: vec![entry],
        annotations: Default::default(),
    };
    repo.put_manifest(
        "otherarch",
        media::OCI_INDEX,
        &serde_json::to_vec(&index).unwrap(),
    )
    .unwrap();

    let d = daemon(&[]);
    for (tag, expect) in [
        ("gzip", "layer"),
        ("otherarch", "no matching manifest for linux/"),
    ] {
        let out = d.cli(&["pull", &format!("{}/bad:{tag}", reg.host())]);
        assert!(!out.status.success(), "{tag}: pull succeeded");
        assert!(stderr(&out).contains(expect), "{tag}: {}", stderr(&out));
        let (images, layers, blobs) = stored(&d);
        assert!(
            images.is_empty() && layers.is_empty() && blobs.is_empty(),
            "{tag}: left {images:?} {layers:?} {blobs:?}"
        );
    }
}

#[test]
fn commit_history_save_and_load_with_the_docker_cli() {
    let d = daemon(&[]);
    d.import_busybox();
    d.ok(&[
        "run",
        "-d",
        "--name",
        "live",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        "mkdir -p /data/sub && echo v > /data/sub/f && rm /bin/ls && sleep 300",
    ]);
    // Wait for the changes to be in place.
    for _ in 0..100 {
        if d.ok(&["diff", "live"]).contains("D /bin/ls") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let id = d.ok(&[
        "commit",
        "--pause",
        "-a",
        "Ann <a@example.com>",
        "-m",
        "snap",
        "-c",
        "WORKDIR /data",
        "-c",
        "CMD [\"cat\", \"sub/f\"]",
        "live",
        "snap:1",
    ]);
    assert!(id.trim().starts_with("sha256:"));
    // Paused for the commit only.
    assert_eq!(
        d.ok(&["inspect", "-f", "{{.State.Status}}", "live"]).trim(),
        "running"
    );
    assert_eq!(
        d.ok(&["run", "--rm", "--network", "none", "snap:1"]).trim(),
        "v"
    );
    let out = d.cli(&[
        "run",
        "--rm",
        "--network",
        "none",
        "snap:1",
        "ls",
        "/bin/ls",
    ]);
    assert!(!out.status.success(), "the deletion was not committed");
    let author = d.ok(&[
        "image",
        "inspect",
        "-f",
        "{{.Author}} {{.Config.WorkingDir}} {{len .RootFS.Layers}}",
        "snap:1",
    ]);
    assert_eq!(author.trim(), "Ann <a@example.com> /data 2");
    let hist = d.ok(&[
        "history",
        "--format",
        "{{.Comment}}|{{.CreatedBy}}",
        "snap:1",
    ]);
    let lines: Vec<&str> = hist.lines().collect();
    assert_eq!(lines.len(), 2, "{hist}");
    assert!(lines[0].starts_with("snap|sh -c mkdir"), "{hist}");
    // A bad --change is refused and stores nothing.
    let before = d.ok(&["images", "-q"]);
    let out = d.cli(&["commit", "-c", "FROBNICATE x", "live", "bad:1"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("FROBNICATE"), "{}", stderr(&out));
    assert_eq!(d.ok(&["images", "-q"]), before);
    d.ok(&["rm", "-f", "live"]);

    // Several images in one archive, loaded back.
    let archive = d.dir().join("two.tar");
    d.ok(&[
        "save",
        "-o",
        archive.to_str().unwrap(),
        "snap:1",
        "busybox:latest",
    ]);
    d.ok(&["rmi", "snap:1"]);
    let out = d.ok(&["load", "-i", archive.to_str().unwrap()]);
    assert!(
        out.contains("Loaded image: snap:1") && out.contains("Loaded image: busybox:latest"),
        "{out}"
    );
    assert_eq!(
        d.ok(&["image", "inspect", "-f", "{{.Id}}", "snap:1"])
            .trim(),
        id.trim()
    );
    // skopeo, an independent OCI reader, reads it.
    let sk = std::process::Command::new("skopeo")
        .args([
            "inspect",
            "--raw",
            &format!("oci-archive:{}:1", archive.display()),
        ])
        .output()
        .unwrap();
    assert!(sk.status.success(), "skopeo: {}", stderr(&sk));
    let m: Manifest = serde_json::from_slice(&sk.stdout).unwrap();
    assert_eq!(m.layers.len(), 2);
}

#[test]
fn zstd_plain_and_whiteout_layers_pull_and_run() {
    let reg = Registry::start();
    let client = silo_registry::Client::new(Default::default());
    let r = Reference::parse(&format!("{}/mixed:1", reg.host())).unwrap();
    let repo = client.repository(&r, None, true).unwrap();
    // Layer 1: the busybox rootfs, uncompressed.
    let base = std::fs::read(silo_testsupport::rootfs_tar()).unwrap();
    let mut l1 = upload(&repo, &base);
    l1.media_type = media::OCI_LAYER.into();
    // Layer 2: a new file and a whiteout of /bin/ls, zstd-compressed.
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(5);
    h.set_mode(0o644);
    b.append_data(&mut h, "z", &b"zstd\n"[..]).unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_size(0);
    h.set_mode(0o644);
    b.append_data(&mut h, "bin/.wh.ls", &[][..]).unwrap();
    let plain2 = b.into_inner().unwrap();
    let mut zstd = std::process::Command::new("zstd")
        .args(["-q", "-c"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("zstd (Debian package zstd)");
    use std::io::Write as _;
    zstd.stdin.take().unwrap().write_all(&plain2).unwrap();
    let z2 = zstd.wait_with_output().unwrap().stdout;
    let mut l2 = upload(&repo, &z2);
    l2.media_type = media::OCI_LAYER_ZSTD.into();
    let config = format!(
        r#"{{"architecture":"amd64","os":"linux","config":{{"Cmd":["cat","/z"]}},"rootfs":{{"type":"layers","diff_ids":["{}","{}"]}}}}"#,
        silo_oci::image::sha256_digest(&base),
        silo_oci::image::sha256_digest(&plain2)
    );
    let mut cfg = upload(&repo, config.as_bytes());
    cfg.media_type = media::OCI_CONFIG.into();
    let manifest = Manifest {
        schema_version: 2,
        media_type: Some(media::OCI_MANIFEST.into()),
        config: cfg,
        layers: vec![l1, l2],
        annotations: Default::default(),
    };
    repo.put_manifest(
        "1",
        media::OCI_MANIFEST,
        &serde_json::to_vec(&manifest).unwrap(),
    )
    .unwrap();
    let d = daemon(&[]);
    let name = format!("{}/mixed:1", reg.host());
    d.ok(&["pull", &name]);
    assert_eq!(
        d.ok(&["run", "--rm", "--network", "none", &name]).trim(),
        "zstd"
    );
    let out = d.cli(&["run", "--rm", "--network", "none", &name, "ls", "/bin/ls"]);
    assert!(!out.status.success(), "the whiteout did not hide /bin/ls");
    assert_eq!(
        d.ok(&["run", "--rm", "--network", "none", &name, "echo", "base"])
            .trim(),
        "base"
    );
}
