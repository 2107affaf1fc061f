//! The content store and layers from blobs: digests are checked while a blob
//! is written, an interrupted blob resumes, layers unpack with overlay
//! whiteouts, a wrong diffID or a missing layer stores nothing.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::fs;
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use sha2::{Digest, Sha256};
use silo_oci::image::{media, Descriptor};
use silo_storage::{AddImageError, BlobError, LayerError, Store};

fn digest(b: &[u8]) -> String {
    let h: String = Sha256::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect();
    format!("sha256:{h}")
}

/// A tar built entry by entry (so whiteouts and xattrs can be put in).
fn tar(entries: &[(&str, &[u8])], dirs: &[&str]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for d in dirs {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o755);
        h.set_size(0);
        b.append_data(&mut h, d, &[][..]).unwrap();
    }
    for (name, data) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        b.append_data(&mut h, name, *data).unwrap();
    }
    b.into_inner().unwrap()
}

fn gzip(b: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

fn store() -> (tempfile::TempDir, Store) {
    let d = tempfile::tempdir().unwrap();
    let s = Store::open(d.path()).unwrap();
    (d, s)
}

fn leftovers(root: &Path) -> Vec<String> {
    fs::read_dir(root.join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn a_blob_is_checked_against_its_digest() {
    let (_d, s) = store();
    let good = b"hello".to_vec();
    let d = s.write_blob(&good, Some(&digest(&good))).unwrap();
    assert_eq!(s.read_blob(&d).unwrap(), good);
    let wrong = digest(b"other");
    let e = s.write_blob(&good, Some(&wrong)).unwrap_err();
    assert!(matches!(e, BlobError::Mismatch { .. }), "{e}");
    assert!(e.to_string().contains(&wrong), "{e}");
    assert!(!s.has_blob(&wrong));
    assert_eq!(leftovers(s.root()), [d[7..].to_string()]);
    assert!(matches!(
        s.ingest(Some("sha256:xyz")).unwrap_err(),
        BlobError::BadDigest { .. }
    ));
}

#[test]
fn an_interrupted_blob_resumes_where_it_stopped() {
    let (_d, s) = store();
    let data: Vec<u8> = (0..100_000u32).flat_map(|i| i.to_le_bytes()).collect();
    let d = digest(&data);
    let mut first = s.ingest(Some(&d)).unwrap();
    assert_eq!(first.offset(), 0);
    first.write_all(&data[..150_000]).unwrap();
    drop(first); // the connection dropped
    let mut second = s.ingest(Some(&d)).unwrap();
    assert_eq!(second.offset(), 150_000);
    second.write_all(&data[150_000..]).unwrap();
    assert_eq!(second.commit(Some(data.len() as u64)).unwrap(), d);
    assert_eq!(s.read_blob(&d).unwrap(), data);
    // A second writer of the same digest does not share the partial file.
    let other = b"zzz".to_vec();
    let od = digest(&other);
    let mut a = s.ingest(Some(&od)).unwrap();
    a.write_all(b"z").unwrap();
    let b = s.ingest(Some(&od)).unwrap();
    assert_eq!(b.offset(), 0);
    drop(b);
    a.write_all(b"zz").unwrap();
    a.commit(None).unwrap();
}

#[test]
fn layers_unpack_with_overlay_whiteouts_and_are_shared() {
    let (_d, s) = store();
    let raw = tar(
        &[
            ("etc/.wh.gone", b""),
            ("etc/new", b"n"),
            ("var/.wh..wh..opq", b""),
        ],
        &["etc", "var"],
    );
    let gz = gzip(&raw);
    let desc = Descriptor::new(media::DOCKER_LAYER_GZIP, &digest(&gz), gz.len() as u64);
    s.write_blob(&gz, Some(&desc.digest)).unwrap();
    let diff = digest(&raw);
    s.add_layer_from_blob(&desc, &diff).unwrap();
    let dir = s.layer_path(&diff);
    let wh = fs::symlink_metadata(dir.join("etc/gone")).unwrap();
    assert!(wh.file_type().is_char_device());
    assert_eq!(wh.rdev(), 0);
    let mut buf = [0u8; 4];
    let n = rustix::fs::getxattr(
        dir.join("var").as_path(),
        "trusted.overlay.opaque",
        &mut buf,
    )
    .unwrap();
    assert_eq!(&buf[..n], b"y");
    assert_eq!(fs::read(dir.join("etc/new")).unwrap(), b"n");
    assert_eq!(s.layer_of_blob(&desc.digest).unwrap(), diff);
    // The same layer from an uncompressed blob: recorded, not unpacked again.
    let plain = Descriptor::new(media::DOCKER_LAYER, &digest(&raw), raw.len() as u64);
    s.write_blob(&raw, Some(&plain.digest)).unwrap();
    s.add_layer_from_blob(&plain, &diff).unwrap();
    assert_eq!(s.layer_blobs(&diff).len(), 2);
    assert_eq!(s.compressed_layer_blob(&diff).unwrap().digest, desc.digest);
}

#[test]
fn a_layer_with_the_wrong_diff_id_is_not_stored() {
    let (_d, s) = store();
    let raw = tar(&[("a", b"1")], &[]);
    let desc = Descriptor::new(media::DOCKER_LAYER, &digest(&raw), raw.len() as u64);
    s.write_blob(&raw, Some(&desc.digest)).unwrap();
    let claimed = digest(b"not this");
    let e = s.add_layer_from_blob(&desc, &claimed).unwrap_err();
    assert!(matches!(e, LayerError::DiffId { .. }), "{e}");
    assert!(!s.has_layer(&claimed) && !s.has_layer(&digest(&raw)));
    let layers: Vec<_> = fs::read_dir(s.root().join("layers")).unwrap().collect();
    assert!(layers.is_empty());
}

#[test]
fn an_image_needs_its_layers_and_keeps_its_config_bytes() {
    let (_d, s) = store();
    let raw = tar(&[("a", b"1")], &[]);
    let diff = digest(&raw);
    let config = format!(
        r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":["{diff}"]}},"x-unknown":1}}"#
    );
    let e = s
        .add_image(config.as_bytes(), Some("a:1"), None)
        .unwrap_err();
    assert!(matches!(e, AddImageError::MissingLayer { .. }), "{e}");
    assert!(s.images().is_empty());
    // An import makes the layer and keeps its archive.
    let imported = s.import(&raw[..], None, &[], None).unwrap();
    assert_eq!(imported.diff_ids, std::slice::from_ref(&diff));
    assert_eq!(s.layer_blobs(&diff)[0].digest, digest(&raw));
    let rd = format!("a@{}", digest(b"manifest"));
    let img = s
        .add_image(config.as_bytes(), Some("a:1"), Some(&rd))
        .unwrap();
    assert_eq!(img.id, digest(config.as_bytes()));
    assert_eq!(img.repo_digests, std::slice::from_ref(&rd));
    assert_eq!(s.read_blob(&img.id).unwrap(), config.as_bytes());
    assert_eq!(s.image(&rd).unwrap().id, img.id);
    // gzip made on demand for a push, and kept.
    let gz = s.compressed_layer_blob(&diff).unwrap();
    assert_eq!(gz.media_type, media::DOCKER_LAYER_GZIP);
    assert!(s.has_blob(&gz.digest));
}

#[test]
fn archives_load_with_dot_prefixed_names_and_refuse_escapes() {
    let (_d, s) = store();
    let raw = tar(&[("a", b"1")], &[]);
    let img = s.import(&raw[..], Some("dots:1"), &[], None).unwrap();
    let items = [silo_storage::SaveItem {
        image: s.image("dots:1").unwrap(),
        tags: vec!["dots:1".into()],
    }];
    let mut saved = Vec::new();
    s.save(&items, &mut saved).unwrap();
    // Re-pack with "./" names, as `tar -C dir -c .` writes them.
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Directory);
    h.set_size(0);
    h.set_mode(0o755);
    b.append_data(&mut h, "./", &[][..]).unwrap();
    let mut a = tar::Archive::new(&saved[..]);
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        let name = format!("./{}", e.path().unwrap().display());
        let mut h = e.header().clone();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut e, &mut data).unwrap();
        b.append_data(&mut h, name, &data[..]).unwrap();
    }
    let dotted = b.into_inner().unwrap();
    let (_d2, s2) = store();
    let loaded = s2.load(&dotted[..], &mut |_| {}).unwrap();
    assert_eq!(loaded[0].id, img.id);
    assert_eq!(loaded[0].tags, ["dots:1"]);
    // An entry that climbs out of the archive is refused, and nothing stays
    // (the tar crate's builder will not write such a name: a raw header).
    let mut h = tar::Header::new_old();
    h.as_old_mut().name[..6].copy_from_slice(b"../esc");
    h.set_size(1);
    h.set_mode(0o644);
    h.set_cksum();
    let mut hostile = h.as_bytes().to_vec();
    hostile.extend_from_slice(&[b'1'; 512][..512]);
    hostile.extend_from_slice(&[0u8; 1024]);
    let (_d3, s3) = store();
    let e = s3.load(&hostile[..], &mut |_| {}).unwrap_err();
    assert!(e.to_string().contains("escapes"), "{e}");
    assert!(s3.images().is_empty());
    let left: Vec<_> = fs::read_dir(s3.root().join("blobs/sha256"))
        .unwrap()
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn a_leased_layer_survives_the_removal_of_its_image() {
    let (_d, s) = store();
    let raw = tar(&[("a", b"1")], &[]);
    let img = s.import(&raw[..], Some("l:1"), &[], None).unwrap();
    let lease = s.lease(&img.diff_ids);
    s.remove_image("l:1", false, &|_| false).unwrap();
    assert!(
        s.has_layer(&img.diff_ids[0]),
        "a pull in progress lost its layer"
    );
    assert_eq!(s.layer_blobs(&img.diff_ids[0]).len(), 1);
    drop(lease);
    s.forget_layer(&img.diff_ids[0]);
    assert!(!s.has_layer(&img.diff_ids[0]));
    assert!(leftovers(s.root()).is_empty(), "{:?}", leftovers(s.root()));
}
