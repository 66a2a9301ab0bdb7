//! Importing a local GGUF file into the cache.

use crate::common::*;
use std::fs;
use supply::{resolve_model, Cache, NoProgress, PullError, Puller};

fn puller(root: &std::path::Path) -> Puller {
    // Any network use would fail loudly: nothing listens there.
    Puller::new(Cache::new(root))
        .unwrap()
        .with_pypi_url(format!("http://127.0.0.1:{}", dead_port()))
        .with_hf_endpoint(format!("http://127.0.0.1:{}", dead_port()))
}

#[test]
fn local_file_is_imported_with_marker() {
    let src_dir = tempfile::tempdir().unwrap();
    let src = src_dir.path().join("My Model.gguf");
    let model = fake_gguf(10_000, 41);
    fs::write(&src, &model).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let p = puller(tmp.path());
    let path = p
        .pull_spec(
            src.to_str().unwrap(),
            Some("myname"),
            Some(&sha256_hex(&model)),
            &NoProgress,
        )
        .unwrap();
    assert_eq!(path, tmp.path().join("models/myname/model.gguf"));
    assert_eq!(fs::read(&path).unwrap(), model);
    assert_eq!(supply::read_marker(&path), Some(sha256_hex(&model)));
    assert!(!tmp.path().join("models/myname/model.gguf.partial").exists());
    assert_eq!(resolve_model(&Cache::new(tmp.path()), "myname").unwrap(), path);

    // Default id from the file name.
    let path = p.pull_spec(src.to_str().unwrap(), None, None, &NoProgress).unwrap();
    assert_eq!(path, tmp.path().join("models/my-model/model.gguf"));

    // Re-importing the cached file onto itself is harmless.
    let again = p
        .pull_spec(path.to_str().unwrap(), Some("my-model"), None, &NoProgress)
        .unwrap();
    assert_eq!(fs::read(again).unwrap(), model);
    assert!(!tmp.path().join("models/my-model/model.gguf.partial").exists());
}

#[test]
fn missing_local_file_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let err = puller(tmp.path())
        .pull_spec("./no/such/model.gguf", Some("x"), None, &NoProgress)
        .unwrap_err();
    assert!(matches!(err, PullError::LocalNotFound { .. }), "{err}");
    assert!(err.to_string().contains("./no/such/model.gguf"), "{err}");
    assert!(!tmp.path().join("models/x").exists());
}

#[test]
fn local_sha_mismatch_and_non_gguf_are_refused() {
    let src_dir = tempfile::tempdir().unwrap();
    let src = src_dir.path().join("m.gguf");
    fs::write(&src, fake_gguf(1000, 42)).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let err = puller(tmp.path())
        .pull_spec(src.to_str().unwrap(), None, Some(&"d".repeat(64)), &NoProgress)
        .unwrap_err();
    assert!(matches!(err, PullError::ChecksumMismatch { .. }), "{err}");
    assert!(!tmp.path().join("models/m/model.gguf").exists());
    assert!(!tmp.path().join("models/m/model.gguf.partial").exists());
    assert!(src.exists(), "the source must never be touched");

    let txt = src_dir.path().join("notes.gguf");
    fs::write(&txt, b"hello").unwrap();
    let err = puller(tmp.path())
        .pull_spec(txt.to_str().unwrap(), None, None, &NoProgress)
        .unwrap_err();
    assert!(matches!(err, PullError::NotGguf { .. }), "{err}");

    let err = puller(tmp.path())
        .pull_spec(src.to_str().unwrap(), None, Some("xyz"), &NoProgress)
        .unwrap_err();
    assert!(err.to_string().contains("64 hex"), "{err}");
}
