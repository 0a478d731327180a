//! The store against a real directory and database.

use std::fs;
use std::io::Write;

use berth_oci::Digest;
use berth_store::{Error, LayerRef, NewImage, Store};

fn layer_tar() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(5);
    h.set_mode(0o644);
    h.set_cksum();
    b.append_data(&mut h, "hello.txt", &b"hello"[..]).unwrap();
    b.into_inner().unwrap()
}

#[test]
fn blobs_are_verified_and_atomic() {
    let t = tempfile::tempdir().unwrap();
    let s = Store::open(t.path()).unwrap();
    let d = s.put_blob(b"{}").unwrap();
    assert_eq!(d, Digest::sha256_of(b"{}"));
    assert_eq!(s.read_blob(&d).unwrap(), b"{}");

    let mut w = s.blob_writer().unwrap();
    w.write_all(b"not what was promised").unwrap();
    let err = w.commit(Some(&Digest::sha256_of(b"x"))).unwrap_err();
    assert!(matches!(err, Error::DigestMismatch { .. }), "{err}");
    assert_eq!(s.list_blobs().unwrap(), vec![d.clone()]);

    // A damaged blob is reported, not returned.
    fs::write(s.blob_path(&d), b"{ }").unwrap();
    assert!(matches!(s.read_blob(&d), Err(Error::DigestMismatch { .. })));
}

#[test]
fn images_tags_and_garbage() {
    let t = tempfile::tempdir().unwrap();
    let s = Store::open(t.path()).unwrap();
    let tar = layer_tar();
    let diff = Digest::sha256_of(&tar);
    let got = s.unpack_layer(&tar[..], Some(&diff)).unwrap();
    assert_eq!(got.diff_id, diff);
    assert_eq!(
        fs::read(s.layer_dir(&diff).join("hello.txt")).unwrap(),
        b"hello"
    );
    let blob = s.put_blob(&tar).unwrap();
    let config = s.put_blob(b"config").unwrap();
    let manifest = s.put_blob(b"manifest").unwrap();
    let img = NewImage {
        id: config.clone(),
        manifest_digest: manifest.clone(),
        manifest_media_type: "m".into(),
        created: Some(1),
        parent: None,
        layers: vec![LayerRef {
            diff_id: diff.clone(),
            blob: blob.clone(),
            media_type: "l".into(),
            size: tar.len() as u64,
            blob_size: tar.len() as u64,
        }],
    };
    let moved = s
        .put_image(&img, &["docker.io/library/a:1".into()], &[])
        .unwrap();
    assert!(moved.is_empty());
    let stray = s.put_blob(b"stray").unwrap();
    let report = s.collect_garbage().unwrap();
    assert_eq!(report.blobs, vec![stray]);
    assert!(report.layers.is_empty());

    let rec = s.image(&config).unwrap().unwrap();
    assert_eq!(rec.tags, vec!["docker.io/library/a:1"]);
    assert_eq!(rec.size, tar.len() as u64);
    assert_eq!(
        s.ids_with_prefix(&config.hex()[..6]).unwrap(),
        vec![config.clone()]
    );
    assert_eq!(
        s.untag("docker.io/library/a:1").unwrap(),
        Some(config.clone())
    );
    assert!(s.delete_image(&config).unwrap());
    let report = s.collect_garbage().unwrap();
    assert_eq!(report.blobs.len(), 3);
    assert_eq!(report.layers, vec![diff.clone()]);
    assert!(!s.has_layer(&diff));
    assert!(s.list_blobs().unwrap().is_empty());
}

#[test]
fn wrong_layer_digest_leaves_cache_untouched() {
    let t = tempfile::tempdir().unwrap();
    let s = Store::open(t.path()).unwrap();
    let tar = layer_tar();
    let wrong = Digest::sha256_of(b"other");
    let err = s.unpack_layer(&tar[..], Some(&wrong)).unwrap_err();
    assert!(matches!(err, Error::DigestMismatch { .. }), "{err}");
    assert!(s.list_layers().unwrap().is_empty());
    // Scratch holds nothing but its lock file.
    let scratch: Vec<_> = fs::read_dir(s.scratch().unwrap())
        .unwrap()
        .flatten()
        .collect();
    assert_eq!(scratch.len(), 1, "{scratch:?}");
}

#[test]
fn stale_scratch_is_cleaned_on_open() {
    let t = tempfile::tempdir().unwrap();
    let live = Store::open(t.path()).unwrap();
    let live_dir = live.scratch_dir("x").unwrap();
    // What a killed process leaves: a scratch dir whose lock nobody holds.
    let dead = t.path().join("tmp/999999-0");
    fs::create_dir_all(dead.join("layer0/usr")).unwrap();
    fs::write(dead.join(".lock"), b"").unwrap();
    fs::write(dead.join("blob0"), b"half a blob").unwrap();
    // flock conflicts between open file descriptions even in one process,
    // so a second open here sees the live scratch as taken.
    let _other = Store::open(t.path()).unwrap();
    assert!(!dead.exists());
    assert!(live_dir.exists());
}
