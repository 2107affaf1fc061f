//! Integration tests against the real kernel (run as root): imports of real
//! and hostile tars, tags, removal and pruning, overlay snapshots, export,
//! volumes and disk usage.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};
use silo_storage::{
    ImportError, NotFound, RemoveError, Removed, SnapshotError, Store, VolumeError,
};

fn sha256_hex(b: &[u8]) -> String {
    Sha256::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

/// A small root filesystem: busybox, a shell symlink, a hard link, a fifo, files.
fn rootfs(dir: &Path) {
    fs::create_dir_all(dir.join("bin")).unwrap();
    fs::create_dir_all(dir.join("etc")).unwrap();
    fs::create_dir_all(dir.join("tmp")).unwrap();
    fs::copy("/bin/busybox", dir.join("bin/busybox")).unwrap();
    std::os::unix::fs::symlink("busybox", dir.join("bin/sh")).unwrap();
    fs::hard_link(dir.join("bin/busybox"), dir.join("bin/echo")).unwrap();
    fs::write(dir.join("etc/hostname"), "silo\n").unwrap();
    fs::write(dir.join("etc/setuid-file"), "x").unwrap();
    fs::set_permissions(
        dir.join("etc/setuid-file"),
        fs::Permissions::from_mode(0o4755),
    )
    .unwrap();
    fs::set_permissions(dir.join("tmp"), fs::Permissions::from_mode(0o1777)).unwrap();
    let st = Command::new("mkfifo")
        .arg(dir.join("etc/fifo"))
        .status()
        .unwrap();
    assert!(st.success());
}

fn tar_of(dir: &Path, gzip: bool) -> Vec<u8> {
    let mut c = Command::new("tar");
    c.arg("-C")
        .arg(dir)
        .arg(if gzip { "-cz" } else { "-c" })
        .arg(".");
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

struct Fixture {
    _tmp: tempfile::TempDir,
    outer: PathBuf,
    root: PathBuf,
    store: Store,
}

impl Drop for Fixture {
    /// A failed test may leave overlays mounted: detach everything under the
    /// root before the temp dir goes.
    fn drop(&mut self) {
        let mi = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mut mps: Vec<&str> = mi
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|mp| Path::new(mp).starts_with(&self.root))
            .collect();
        mps.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for mp in mps {
            let _ = Command::new("umount").arg("-l").arg(mp).status();
        }
    }
}

fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let outer = tmp.path().join("outer");
    let root = outer.join("root");
    fs::create_dir_all(&root).unwrap();
    let store = Store::open(&root).unwrap();
    let root = store.root().to_path_buf();
    Fixture {
        outer: outer.canonicalize().unwrap(),
        root,
        store,
        _tmp: tmp,
    }
}

fn busybox_tar(gzip: bool) -> Vec<u8> {
    let d = tempfile::tempdir().unwrap();
    rootfs(d.path());
    tar_of(d.path(), gzip)
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Nothing at all stored: no layers, images, tags.
fn assert_empty(f: &Fixture) {
    assert!(
        names(&f.root.join("layers")).is_empty(),
        "{:?}",
        names(&f.root.join("layers"))
    );
    assert!(names(&f.root.join("images")).is_empty());
    assert!(names(&f.root.join("blobs/sha256")).is_empty());
    assert!(f.store.images().is_empty());
    if let Ok(b) = fs::read(f.root.join("repositories.json")) {
        let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
        assert!(v["tags"].as_object().unwrap().is_empty(), "{v}");
    }
    assert_eq!(names(&f.outer), ["root"]);
}

fn is_mounted(p: &Path) -> bool {
    let mi = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let p = p.to_string_lossy();
    mi.lines().any(|l| l.split(' ').nth(4) == Some(&p))
}

#[test]
fn import_inspect_tag_untag_remove() {
    let f = fixture();
    let tar = busybox_tar(false);
    let changes = vec![
        "CMD [\"sh\"]".to_string(),
        "ENV A=b".to_string(),
        "WORKDIR /tmp".to_string(),
    ];
    let img = f
        .store
        .import(&tar[..], Some("busybox"), &changes, Some("hello"))
        .unwrap();
    // diff_id is the sha256 of the (uncompressed) tar stream.
    assert_eq!(img.diff_ids, [format!("sha256:{}", sha256_hex(&tar))]);
    // id is the sha256 of the stored config.
    let hexid = img.id.strip_prefix("sha256:").unwrap();
    let stored = fs::read(f.root.join("images").join(format!("{hexid}.json"))).unwrap();
    assert_eq!(sha256_hex(&stored), hexid);
    let v: serde_json::Value = serde_json::from_slice(&stored).unwrap();
    assert_eq!(v["rootfs"]["type"], "layers");
    assert_eq!(v["config"]["Cmd"], serde_json::json!(["sh"]));
    assert_eq!(v["config"]["Env"], serde_json::json!(["A=b"]));
    assert_eq!(v["config"]["WorkingDir"], "/tmp");
    assert_eq!(v["os"], "linux");
    assert_eq!(v["history"][0]["comment"], "hello");
    assert_eq!(img.repo_tags, ["busybox:latest"]);
    let bb_size = fs::metadata("/bin/busybox").unwrap().len();
    assert!(
        img.size >= bb_size && img.size < bb_size + 4096,
        "{}",
        img.size
    );

    // The layer holds what the tar held, with metadata.
    let layer = f.store.layer_path(&img.diff_ids[0]);
    let bb = fs::metadata(layer.join("bin/busybox")).unwrap();
    assert_eq!(bb.len(), bb_size);
    assert_eq!(bb.mode() & 0o777, 0o755);
    assert_eq!(
        fs::read_link(layer.join("bin/sh")).unwrap(),
        Path::new("busybox")
    );
    assert_eq!(
        fs::metadata(layer.join("bin/echo")).unwrap().ino(),
        bb.ino()
    );
    assert_eq!(
        fs::read_to_string(layer.join("etc/hostname")).unwrap(),
        "silo\n"
    );
    assert_eq!(
        fs::metadata(layer.join("etc/setuid-file")).unwrap().mode() & 0o7777,
        0o4755
    );
    assert_eq!(
        fs::metadata(layer.join("tmp")).unwrap().mode() & 0o7777,
        0o1777
    );
    use std::os::unix::fs::FileTypeExt;
    assert!(fs::symlink_metadata(layer.join("etc/fifo"))
        .unwrap()
        .file_type()
        .is_fifo());

    // Lookups.
    assert_eq!(f.store.image("busybox").unwrap().id, img.id);
    assert_eq!(f.store.image("busybox:latest").unwrap().id, img.id);
    assert_eq!(f.store.image(&img.id).unwrap().id, img.id);
    assert_eq!(f.store.image(&hexid[..6]).unwrap().id, img.id);
    assert!(matches!(
        f.store.image("busybox:other"),
        Err(NotFound::Image { .. })
    ));
    assert!(matches!(f.store.image("abc"), Err(NotFound::Image { .. })));

    // Tag, then untag: the image stays while it has another tag.
    f.store.tag("busybox", "localhost:5000/me/box:v1").unwrap();
    assert!(f.store.tag("busybox", "Bad Tag").is_err());
    assert!(matches!(
        f.store.tag("nope", "x:y"),
        Err(silo_storage::TagError::Source(_))
    ));
    let i = f.store.image(&img.id).unwrap();
    assert_eq!(i.repo_tags, ["busybox:latest", "localhost:5000/me/box:v1"]);
    // By id with two tags: refused without force.
    assert!(matches!(
        f.store.remove_image(&img.id, false, &|_| false),
        Err(RemoveError::MultipleTags { .. })
    ));
    let r = f
        .store
        .remove_image("localhost:5000/me/box:v1", false, &|_| false)
        .unwrap();
    assert_eq!(r, [Removed::Untagged("localhost:5000/me/box:v1".into())]);
    assert_eq!(
        f.store.image(&img.id).unwrap().repo_tags,
        ["busybox:latest"]
    );

    // Survives a reopen.
    let again = Store::open(&f.root).unwrap();
    assert_eq!(
        again.image("busybox").unwrap(),
        f.store.image("busybox").unwrap()
    );
    drop(again);

    // Last tag of an image a container uses: conflict unless forced.
    let err = f
        .store
        .remove_image("busybox", false, &|id| id == img.id)
        .unwrap_err();
    assert!(matches!(err, RemoveError::InUse { .. }));
    assert!(err.to_string().contains("busybox"), "{err}");
    let r = f
        .store
        .remove_image("busybox", true, &|id| id == img.id)
        .unwrap();
    assert_eq!(
        r,
        [
            Removed::Untagged("busybox:latest".into()),
            Removed::Deleted(img.id.clone()),
            Removed::Deleted(img.diff_ids[0].clone()),
        ]
    );
    assert!(!layer.exists());
    assert!(matches!(
        f.store.remove_image("busybox", false, &|_| false),
        Err(RemoveError::NotFound(_))
    ));
    assert_empty(&f);
    assert!(Store::open(&f.root).unwrap().images().is_empty());
}

#[test]
fn gzip_import_shares_the_layer() {
    let f = fixture();
    let d = tempfile::tempdir().unwrap();
    rootfs(d.path());
    let plain = tar_of(d.path(), false);
    let gz = tar_of(d.path(), true);
    assert_eq!(&gz[..2], &[0x1f, 0x8b]);
    let a = f.store.import(&plain[..], Some("a"), &[], None).unwrap();
    let b = f.store.import(&gz[..], Some("b:1"), &[], None).unwrap();
    assert_ne!(a.id, b.id);
    assert_eq!(a.diff_ids, b.diff_ids, "same content, same diff_id");
    assert_eq!(b.diff_ids[0], format!("sha256:{}", sha256_hex(&plain)));
    // Newest first.
    let list: Vec<String> = f.store.images().into_iter().map(|i| i.id).collect();
    assert_eq!(list, [b.id.clone(), a.id.clone()]);
    // Shared layer counted once in layers_size, as shared in each image.
    let du = f.store.disk_usage();
    assert_eq!(du.layers_size, a.size);
    assert!(du
        .images
        .iter()
        .all(|i| i.shared_size == i.size && i.size == a.size));
    // Removing one keeps the layer for the other.
    let r = f.store.remove_image("a", false, &|_| false).unwrap();
    assert_eq!(r.len(), 2, "{r:?}");
    assert!(f.store.layer_path(&b.diff_ids[0]).is_dir());
    let r = f.store.remove_image(&b.id, false, &|_| false).unwrap();
    assert!(r.contains(&Removed::Deleted(b.diff_ids[0].clone())));
    assert_empty(&f);
}

#[test]
fn bad_references_and_changes_leave_nothing() {
    let f = fixture();
    let tar = busybox_tar(false);
    for bad in ["Busybox", "a:b:c", "x@sha256:00", "busybox:", ""] {
        let e = f.store.import(&tar[..], Some(bad), &[], None).unwrap_err();
        assert!(matches!(e, ImportError::Reference(_)), "{bad}: {e}");
    }
    let e = f
        .store
        .import(&tar[..], None, &["RUN echo".to_string()], None)
        .unwrap_err();
    assert!(matches!(e, ImportError::Change(_)), "{e}");
    assert_empty(&f);
}

#[test]
fn truncated_imports_leave_nothing() {
    let f = fixture();
    let tar = busybox_tar(false);
    let gz = busybox_tar(true);
    // Cut in the middle of busybox's data.
    let e = f
        .store
        .import(&tar[..tar.len() / 2], Some("t"), &[], None)
        .unwrap_err();
    assert!(matches!(e, ImportError::Unpack { .. }), "{e}");
    assert_empty(&f);
    let e = f
        .store
        .import(&gz[..gz.len() / 2], Some("t"), &[], None)
        .unwrap_err();
    assert!(matches!(e, ImportError::Unpack { .. }), "{e}");
    assert_empty(&f);
    // Cut exactly after a complete entry: no end-of-archive block.
    let mut one = Vec::new();
    {
        let mut b = tar::Builder::new(&mut one);
        let mut h = tar::Header::new_gnu();
        h.set_size(3);
        h.set_mode(0o644);
        b.append_data(&mut h, "f", &b"abc"[..]).unwrap();
        b.finish().unwrap();
    }
    let e = f.store.import(&one[..1024], None, &[], None).unwrap_err();
    assert!(e.to_string().contains("end-of-archive"), "{e}");
    assert_empty(&f);
    assert!(f.store.import(&b""[..], None, &[], None).is_err());
    assert!(f.store.import(&b"garbage!"[..], None, &[], None).is_err());
    assert_empty(&f);
    // The complete archive is fine.
    assert!(f.store.import(&one[..], None, &[], None).is_ok());
}

/// Appends an entry whose name and link target bytes are written raw, so
/// hostile names the tar crate's setters refuse can be produced.
fn raw_entry(out: &mut Vec<u8>, kind: tar::EntryType, name: &str, link: &str, data: &[u8]) {
    let mut h = tar::Header::new_ustar();
    {
        let o = h.as_ustar_mut().unwrap();
        o.name[..name.len()].copy_from_slice(name.as_bytes());
        o.linkname[..link.len()].copy_from_slice(link.as_bytes());
    }
    h.set_entry_type(kind);
    h.set_mode(if kind == tar::EntryType::Directory {
        0o755
    } else {
        0o644
    });
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_700_000_000);
    h.set_size(data.len() as u64);
    if kind == tar::EntryType::Char {
        h.set_device_major(1).unwrap();
        h.set_device_minor(3).unwrap();
    }
    h.set_cksum();
    out.extend_from_slice(h.as_bytes());
    out.extend_from_slice(data);
    let pad = (512 - data.len() % 512) % 512;
    out.extend(std::iter::repeat_n(0u8, pad));
}

fn finish(mut v: Vec<u8>) -> Vec<u8> {
    v.extend(std::iter::repeat_n(0u8, 1024));
    v
}

/// Host paths a hostile tar aims at must never appear.
fn assert_host_untouched(f: &Fixture, tag: &str) {
    assert!(!Path::new(&format!("/tmp/silo-pwned-{tag}")).exists());
    assert!(!Path::new("/etc/passwd-pwned").exists());
    assert_eq!(names(&f.outer), ["root"]);
    let mut top = names(&f.root);
    top.retain(|n| n != "repositories.json");
    assert_eq!(top, ["blobs", "images", "layers", "snapshots", "volumes"]);
    // No partial archive was kept either.
    let blobs = names(&f.root.join("blobs/sha256"));
    assert!(!blobs.iter().any(|n| n.starts_with(".tmp-")), "{blobs:?}");
}

#[test]
fn hostile_tars_cannot_write_outside_the_layer() {
    use tar::EntryType as E;
    let pid = std::process::id();
    let tag = format!("{pid}");

    // 1. `..` traversal: the import fails naming the entry; nothing stays.
    let f = fixture();
    let mut t = Vec::new();
    raw_entry(&mut t, E::Regular, "ok", "", b"fine");
    raw_entry(&mut t, E::Regular, "../../escape", "", b"pwned");
    let e = f
        .store
        .import(&finish(t)[..], Some("evil"), &[], None)
        .unwrap_err();
    assert!(e.to_string().contains("../../escape"), "{e}");
    assert_empty(&f);
    assert_host_untouched(&f, &tag);

    // 2. Absolute symlink then a write through it; 3. relative symlink
    // climbing out then a write through it; 5. a device node. All resolve
    // inside the layer (as the container will see them) or are skipped.
    let f = fixture();
    let mut t = Vec::new();
    raw_entry(&mut t, E::Symlink, "evil", "/", b"");
    raw_entry(&mut t, E::Regular, "evil/etc/passwd-pwned", "", b"pwned");
    raw_entry(
        &mut t,
        E::Symlink,
        "up",
        "../../../../../../../../../../../..",
        b"",
    );
    raw_entry(
        &mut t,
        E::Regular,
        &format!("up/tmp/silo-pwned-{tag}"),
        "",
        b"pwned",
    );
    raw_entry(&mut t, E::Char, "dev/mem-copy", "", b"");
    raw_entry(&mut t, E::Regular, "/abs/file", "", b"abs");
    let img = f
        .store
        .import(&finish(t)[..], Some("evil"), &[], None)
        .unwrap();
    let layer = f.store.layer_path(&img.diff_ids[0]);
    assert_eq!(fs::read_link(layer.join("evil")).unwrap(), Path::new("/"));
    assert_eq!(fs::read(layer.join("etc/passwd-pwned")).unwrap(), b"pwned");
    assert_eq!(
        fs::read(layer.join(format!("tmp/silo-pwned-{tag}"))).unwrap(),
        b"pwned"
    );
    assert_eq!(fs::read(layer.join("abs/file")).unwrap(), b"abs");
    assert!(
        fs::symlink_metadata(layer.join("dev/mem-copy")).is_err(),
        "device node skipped"
    );
    assert_host_untouched(&f, &tag);

    // 4. Hard link to /etc/shadow: resolved inside the layer; absent there → fails.
    let f = fixture();
    let mut t = Vec::new();
    raw_entry(&mut t, E::Link, "shadow-copy", "/etc/shadow", b"");
    let e = f
        .store
        .import(&finish(t)[..], Some("evil"), &[], None)
        .unwrap_err();
    assert!(
        e.to_string().contains("shadow-copy") && e.to_string().contains("/etc/shadow"),
        "{e}"
    );
    assert_empty(&f);
    // ... through a symlink to /, also absent inside the layer → fails.
    let mut t = Vec::new();
    raw_entry(&mut t, E::Symlink, "evil", "/", b"");
    raw_entry(&mut t, E::Link, "shadow-copy", "evil/etc/shadow", b"");
    assert!(f.store.import(&finish(t)[..], None, &[], None).is_err());
    assert_empty(&f);
    // ... with `..` in the target: traversal.
    let mut t = Vec::new();
    raw_entry(&mut t, E::Link, "x", "../../../../etc/shadow", b"");
    let e = f.store.import(&finish(t)[..], None, &[], None).unwrap_err();
    assert!(e.to_string().contains("escapes"), "{e}");
    assert_empty(&f);
    // ... and when the layer has its own etc/shadow, the link is to that file.
    let mut t = Vec::new();
    raw_entry(&mut t, E::Directory, "etc/", "", b"");
    raw_entry(&mut t, E::Regular, "etc/shadow", "", b"layer's own");
    raw_entry(&mut t, E::Link, "shadow-copy", "/etc/shadow", b"");
    let img = f.store.import(&finish(t)[..], None, &[], None).unwrap();
    let layer = f.store.layer_path(&img.diff_ids[0]);
    let link = fs::metadata(layer.join("shadow-copy")).unwrap();
    assert_eq!(
        link.ino(),
        fs::metadata(layer.join("etc/shadow")).unwrap().ino()
    );
    assert_ne!(link.ino(), fs::metadata("/etc/shadow").unwrap().ino());
    assert_host_untouched(&f, &tag);

    // An over-long path is refused.
    let f = fixture();
    let mut h = tar::Header::new_gnu();
    h.set_size(0);
    h.set_mode(0o644);
    let mut t = Vec::new();
    {
        let mut b = tar::Builder::new(&mut t);
        b.append_data(&mut h, "a/".repeat(2100) + "f", &b""[..])
            .unwrap();
        b.finish().unwrap();
    }
    let e = f.store.import(&t[..], None, &[], None).unwrap_err();
    assert!(e.to_string().contains("longer than"), "{e}");
    assert_empty(&f);
}

#[test]
fn prune_images() {
    let f = fixture();
    let tar = busybox_tar(false);
    let mut small = Vec::new();
    raw_entry(&mut small, tar::EntryType::Regular, "only", "", b"1234567");
    let small = finish(small);
    let tagged = f.store.import(&tar[..], Some("keep:1"), &[], None).unwrap();
    let dangling = f.store.import(&small[..], None, &[], None).unwrap();
    assert!(dangling.repo_tags.is_empty());
    let rep = f.store.prune_images(true, &|_| false).unwrap();
    assert_eq!(
        rep.deleted,
        [
            Removed::Deleted(dangling.id.clone()),
            Removed::Deleted(dangling.diff_ids[0].clone())
        ]
    );
    // The layer's 7 bytes of files and its stored archive.
    assert_eq!(rep.space_reclaimed, 7 + small.len() as u64);
    assert!(f.store.image(&tagged.id).is_ok());
    // In use: kept even by a full prune.
    let rep = f.store.prune_images(false, &|id| id == tagged.id).unwrap();
    assert!(rep.deleted.is_empty());
    let rep = f.store.prune_images(false, &|_| false).unwrap();
    assert_eq!(rep.deleted[0], Removed::Untagged("keep:1".into()));
    assert_eq!(rep.space_reclaimed, tagged.size + tar.len() as u64);
    assert_empty(&f);
}

#[test]
fn snapshot_mount_write_export_remove() {
    let f = fixture();
    let tar = busybox_tar(false);
    let img = f
        .store
        .import(&tar[..], Some("busybox"), &[], None)
        .unwrap();
    let layer = f.store.layer_path(&img.diff_ids[0]);
    assert!(matches!(
        f.store.create_snapshot("../x", "busybox"),
        Err(SnapshotError::BadId { .. })
    ));
    assert!(matches!(
        f.store.create_snapshot("c1", "nope"),
        Err(SnapshotError::Image { .. })
    ));
    let merged = f.store.create_snapshot("c1", "busybox").unwrap();
    let sdir = f.root.join("snapshots/c1");
    assert_eq!(merged, sdir.join("merged"));
    assert!(is_mounted(&merged));
    // Idempotent.
    assert_eq!(f.store.create_snapshot("c1", &img.id).unwrap(), merged);
    assert_eq!(f.store.mount_snapshot("c1").unwrap(), merged);
    let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert_eq!(mounts.matches(&*merged.to_string_lossy()).count(), 1);

    // The overlay works: busybox runs from it, writes go to upper only.
    let out = Command::new("chroot")
        .arg(&merged)
        .args([
            "/bin/sh",
            "-c",
            "echo from-container > /tmp/written; /bin/busybox cat /etc/hostname",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "silo\n");
    fs::write(merged.join("etc/hostname"), "changed\n").unwrap();
    assert_eq!(
        fs::read_to_string(sdir.join("upper/tmp/written")).unwrap(),
        "from-container\n"
    );
    assert_eq!(
        fs::read_to_string(sdir.join("upper/etc/hostname")).unwrap(),
        "changed\n"
    );
    assert!(!layer.join("tmp/written").exists());
    assert_eq!(
        fs::read_to_string(layer.join("etc/hostname")).unwrap(),
        "silo\n"
    );
    let size = f.store.snapshot_size("c1");
    assert!((23..4096).contains(&size), "{size}");
    let du = f.store.disk_usage();
    assert_eq!(du.snapshots, [("c1".to_string(), size)]);

    // Another container from the same image doesn't see c1's writes.
    let m2 = f.store.create_snapshot("c2", "busybox").unwrap();
    assert!(!m2.join("tmp/written").exists());
    assert!(matches!(
        f.store.create_snapshot("c2", "sha256:0000"),
        Err(SnapshotError::Image { .. })
    ));
    f.store.remove_snapshot("c2").unwrap();
    assert!(!is_mounted(&m2));

    // Export (mounted).
    let mut buf = Vec::new();
    f.store.export_snapshot("c1", &mut buf).unwrap();
    let check_export = |buf: &[u8]| {
        let mut a = tar::Archive::new(buf);
        let mut seen = BTreeMap::new();
        for e in a.entries().unwrap() {
            let mut e = e.unwrap();
            let p = e.path().unwrap().to_string_lossy().into_owned();
            let mut s = Vec::new();
            e.read_to_end(&mut s).unwrap();
            seen.insert(p, (e.header().entry_type(), s));
        }
        assert_eq!(seen["tmp/written"].1, b"from-container\n");
        assert_eq!(seen["etc/hostname"].1, b"changed\n");
        assert!(seen["bin/sh"].0.is_symlink());
        assert!(seen["bin/busybox"].1.len() > 1000);
        assert_eq!(seen["etc/fifo"].0, tar::EntryType::Fifo);
    };
    check_export(&buf);
    // The export imports back as an image holding the container's changes.
    let rt = f
        .store
        .import(&buf[..], Some("roundtrip"), &[], None)
        .unwrap();
    let rt_layer = f.store.layer_path(&rt.diff_ids[0]);
    assert_eq!(
        fs::read(rt_layer.join("tmp/written")).unwrap(),
        b"from-container\n"
    );
    assert!(fs::read_link(rt_layer.join("bin/sh")).is_ok());
    f.store
        .remove_image("roundtrip", false, &|_| false)
        .unwrap();
    assert!(!rt_layer.exists());

    // Unmount; export of an unmounted snapshot mounts for the duration only.
    f.store.unmount_snapshot("c1").unwrap();
    assert!(!is_mounted(&merged));
    f.store.unmount_snapshot("c1").unwrap();
    let mut buf = Vec::new();
    f.store.export_snapshot("c1", &mut buf).unwrap();
    check_export(&buf);
    assert!(!is_mounted(&merged));
    assert!(matches!(
        f.store.unmount_snapshot("zz"),
        Err(SnapshotError::NoSuchSnapshot { .. })
    ));

    // An image removed (forced) while a snapshot uses it keeps its layer
    // until the snapshot goes.
    f.store.mount_snapshot("c1").unwrap();
    f.store.remove_image("busybox", true, &|_| true).unwrap();
    assert!(layer.is_dir());
    f.store.remove_snapshot("c1").unwrap();
    assert!(!is_mounted(&merged));
    assert!(!sdir.exists());
    assert!(
        !layer.exists(),
        "orphan layer collected with its last snapshot"
    );
    assert!(names(&f.root.join("snapshots")).is_empty());
    f.store.remove_snapshot("c1").unwrap();
    let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(&*f.root.to_string_lossy()));
    assert_empty(&f);
}

#[test]
fn volatile_snapshots_mount_volatile_and_remount() {
    let f = fixture();
    let tar = busybox_tar(false);
    f.store
        .import(&tar[..], Some("busybox"), &[], None)
        .unwrap();
    let merged = f
        .store
        .create_snapshot_with("vol", "busybox", true)
        .unwrap();
    let opts = |p: &Path| -> String {
        let mi = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        mi.lines()
            .find(|l| l.split(' ').nth(4) == Some(p.to_str().unwrap()))
            .unwrap_or_default()
            .to_string()
    };
    assert!(opts(&merged).contains("volatile"), "{}", opts(&merged));
    std::fs::write(merged.join("kept"), b"x").unwrap();
    // A second mount of the same work dir (a restart) must not be refused.
    f.store.unmount_snapshot("vol").unwrap();
    let again = Store::open(&f.root).unwrap();
    assert_eq!(again.mount_snapshot("vol").unwrap(), merged);
    assert!(opts(&merged).contains("volatile"), "{}", opts(&merged));
    assert!(merged.join("kept").is_file());
    let plain = again.create_snapshot("plain", "busybox").unwrap();
    assert!(!opts(&plain).contains("volatile"), "{}", opts(&plain));
    again.remove_snapshot("vol").unwrap();
    again.remove_snapshot("plain").unwrap();
    assert!(!is_mounted(&merged));
}

#[test]
fn snapshots_survive_reopen() {
    let f = fixture();
    let tar = busybox_tar(false);
    f.store
        .import(&tar[..], Some("busybox"), &[], None)
        .unwrap();
    let merged = f.store.create_snapshot("keep", "busybox").unwrap();
    let other = f.store.create_snapshot("other", "busybox").unwrap();
    f.store.unmount_snapshot("keep").unwrap();
    f.store.unmount_snapshot("other").unwrap();
    let diff_ids = f.store.image("busybox").unwrap().diff_ids;
    // Snapshot metadata is read lazily after a reopen; removing the image
    // must still see that the snapshots use its layer.
    let again = Store::open(&f.root).unwrap();
    again.remove_image("busybox", true, &|_| false).unwrap();
    assert!(
        again.layer_path(&diff_ids[0]).is_dir(),
        "layer in use was deleted"
    );
    assert_eq!(again.mount_snapshot("other").unwrap(), other);
    again.remove_snapshot("other").unwrap();
    assert!(
        again.layer_path(&diff_ids[0]).is_dir(),
        "layer in use was deleted"
    );
    assert_eq!(again.mount_snapshot("keep").unwrap(), merged);
    assert!(merged.join("bin/busybox").is_file());
    // Removed by a store that never read its metadata: the layer only it
    // used must still go.
    again.unmount_snapshot("keep").unwrap();
    let third = Store::open(&f.root).unwrap();
    third.remove_snapshot("keep").unwrap();
    assert!(!is_mounted(&merged));
    assert!(
        !third.layer_path(&diff_ids[0]).exists(),
        "unused layer kept"
    );
}

#[test]
fn volumes() {
    let f = fixture();
    let labels: BTreeMap<String, String> = [("k".to_string(), "v".to_string())].into();
    let v = f.store.create_volume(Some("data"), labels.clone()).unwrap();
    assert_eq!(v.name, "data");
    assert_eq!(v.driver, "local");
    assert_eq!(v.labels, labels);
    assert_eq!(v.mountpoint, f.root.join("volumes/data/_data"));
    assert!(v.mountpoint.is_dir());
    // Existing name: returned unchanged.
    let again = f
        .store
        .create_volume(Some("data"), BTreeMap::new())
        .unwrap();
    assert_eq!(again, v);
    let anon = f.store.create_volume(None, BTreeMap::new()).unwrap();
    assert_eq!(anon.name.len(), 64);
    assert!(anon.name.bytes().all(|b| b.is_ascii_hexdigit()));
    for bad in ["a", "-x", "a/b", "..", "x y"] {
        assert!(matches!(
            f.store.create_volume(Some(bad), BTreeMap::new()),
            Err(VolumeError::BadName { .. })
        ));
    }
    let mut want = vec![anon.name.clone(), "data".to_string()];
    want.sort();
    let got: Vec<String> = f.store.volumes().into_iter().map(|v| v.name).collect();
    assert_eq!(got, want);
    assert_eq!(f.store.volume("data").unwrap(), v);
    assert!(matches!(
        f.store.volume("nope"),
        Err(NotFound::Volume { .. })
    ));

    fs::write(v.mountpoint.join("file"), [7u8; 1000]).unwrap();
    let du = f.store.disk_usage();
    assert!(du.volumes.contains(&("data".to_string(), 1000)));
    assert!(du.volumes.contains(&(anon.name.clone(), 0)));

    assert!(matches!(
        f.store.remove_volume("data", true, true),
        Err(VolumeError::InUse { .. })
    ));
    assert!(matches!(
        f.store.remove_volume("nope", false, false),
        Err(VolumeError::NotFound(_))
    ));
    f.store.remove_volume("nope", false, true).unwrap();

    // Prune keeps what is in use.
    let rep = f.store.prune_volumes(&|n| n == anon.name).unwrap();
    assert_eq!(rep.deleted, [Removed::Deleted("data".into())]);
    assert_eq!(rep.space_reclaimed, 1000);
    assert!(!f.root.join("volumes/data").exists());
    f.store.remove_volume(&anon.name, false, false).unwrap();
    assert!(f.store.volumes().is_empty());
    assert!(names(&f.root.join("volumes")).is_empty());
}

#[test]
fn open_sweeps_leftovers() {
    let f = fixture();
    fs::create_dir_all(f.root.join("layers/.tmp-import-dead/bin")).unwrap();
    fs::write(f.root.join("images/.tmp-x.json-1-1"), "{").unwrap();
    fs::create_dir_all(f.root.join("volumes/.tmp-v-1-1/_data")).unwrap();
    let s = Store::open(&f.root).unwrap();
    assert!(s.images().is_empty());
    assert!(names(&f.root.join("layers")).is_empty());
    assert!(names(&f.root.join("images")).is_empty());
    assert!(names(&f.root.join("volumes")).is_empty());
    let mut out = std::io::sink();
    out.flush().unwrap();
}

#[test]
fn concurrent_imports_share_one_layer() {
    let tmp = tempfile::tempdir().unwrap();
    let store = std::sync::Arc::new(Store::open(tmp.path()).unwrap());
    let root = store.root().to_path_buf();
    let tar = std::sync::Arc::new(busybox_tar(false));
    let handles: Vec<_> = (0..3)
        .map(|i| {
            let (s, t) = (store.clone(), tar.clone());
            std::thread::spawn(move || {
                s.import(&t[..], Some(&format!("c:{i}")), &[], None)
                    .unwrap()
            })
        })
        .collect();
    let imgs: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert!(imgs.iter().all(|i| i.diff_ids == imgs[0].diff_ids));
    assert_eq!(
        names(&root.join("layers")).len(),
        2,
        "one layer dir + its meta"
    );
    assert_eq!(store.images().len(), 3);
    for i in 0..3 {
        store
            .remove_image(&format!("c:{i}"), false, &|_| false)
            .unwrap();
    }
    assert!(names(&root.join("layers")).is_empty());
}
