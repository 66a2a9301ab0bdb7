//! Pulling single files from a (loopback) Hugging Face endpoint.

use crate::common::*;
use std::fs;
use supply::{resolve_model, Cache, NoProgress, PullError, Puller};

fn puller(endpoint: &str, root: &std::path::Path) -> Puller {
    Puller::new(Cache::new(root))
        .unwrap()
        .with_hf_endpoint(endpoint)
        .with_hf_token(None)
}

#[test]
fn hf_pull_with_revision_token_and_sha() {
    let server = Server::start();
    let model = fake_gguf(123_456, 31);
    server.add("/owner/repo/resolve/v1.0/sub/Tiny-Model.Q4.gguf", model.clone());
    let tmp = tempfile::tempdir().unwrap();
    let p = puller(&server.base, tmp.path()).with_hf_token(Some("secret".into()));
    let sha = sha256_hex(&model);
    let path = p
        .pull_spec(
            "hf:owner/repo/sub/Tiny-Model.Q4.gguf@v1.0",
            Some("mine"),
            Some(&sha),
            &NoProgress,
        )
        .unwrap();
    assert_eq!(path, tmp.path().join("models/mine/model.gguf"));
    assert_eq!(fs::read(&path).unwrap(), model);
    assert_eq!(supply::read_marker(&path), Some(sha.clone()));
    let reqs = server.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(
        reqs[0].headers.get("authorization").map(String::as_str),
        Some("Bearer secret")
    );
    assert_eq!(resolve_model(&Cache::new(tmp.path()), "mine").unwrap(), path);

    // Again: cached, no request.
    p.pull_spec(
        "hf:owner/repo/sub/Tiny-Model.Q4.gguf@v1.0",
        Some("mine"),
        Some(&sha),
        &NoProgress,
    )
    .unwrap();
    assert_eq!(server.count(), 1);

    // Without --id the id comes from the file name; without a token no header is sent.
    let p = puller(&server.base, tmp.path());
    let path = p
        .pull_spec("hf:owner/repo/sub/Tiny-Model.Q4.gguf@v1.0", None, None, &NoProgress)
        .unwrap();
    assert_eq!(path, tmp.path().join("models/tiny-model.q4/model.gguf"));
    assert_eq!(server.requests()[1].headers.get("authorization"), None);
    // Same origin, no sha: trusted through the marker, no request.
    p.pull_spec("hf:owner/repo/sub/Tiny-Model.Q4.gguf@v1.0", None, None, &NoProgress)
        .unwrap();
    assert_eq!(server.count(), 2);
}

#[test]
fn hf_default_revision_is_main() {
    let server = Server::start();
    let model = fake_gguf(1000, 32);
    server.add("/o/r/resolve/main/m.gguf", model.clone());
    let tmp = tempfile::tempdir().unwrap();
    let path = puller(&server.base, tmp.path())
        .pull_spec("hf:o/r/m.gguf", None, None, &NoProgress)
        .unwrap();
    assert_eq!(fs::read(path).unwrap(), model);
}

#[test]
fn hf_404_is_a_clear_error() {
    let server = Server::start();
    let tmp = tempfile::tempdir().unwrap();
    let err = puller(&server.base, tmp.path())
        .pull_spec("hf:o/r/missing.gguf@v2", None, None, &NoProgress)
        .unwrap_err();
    assert!(matches!(err, PullError::HttpStatus { status: 404, .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("/o/r/resolve/v2/missing.gguf") && msg.contains("not found"),
        "{msg}"
    );
    assert!(!tmp.path().join("models/missing/model.gguf").exists());
}

#[test]
fn hf_unreachable_host_is_a_clear_error() {
    let endpoint = format!("http://127.0.0.1:{}", dead_port());
    let tmp = tempfile::tempdir().unwrap();
    let err = puller(&endpoint, tmp.path())
        .pull_spec("hf:o/r/m.gguf", None, None, &NoProgress)
        .unwrap_err();
    assert!(matches!(err, PullError::Network { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("could not reach") && msg.contains(&format!("{endpoint}/o/r/resolve/main/m.gguf")),
        "{msg}"
    );
}

#[test]
fn hf_sha_mismatch_leaves_nothing() {
    let server = Server::start();
    let model = fake_gguf(5000, 33);
    server.add("/o/r/resolve/main/m.gguf", model.clone());
    let tmp = tempfile::tempdir().unwrap();
    let wrong = "c".repeat(64);
    let err = puller(&server.base, tmp.path())
        .pull_spec("hf:o/r/m.gguf", None, Some(&wrong), &NoProgress)
        .unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains(&wrong) && msg.contains(&sha256_hex(&model)), "{msg}");
    assert!(!tmp.path().join("models/m/model.gguf").exists());
    assert!(!tmp.path().join("models/m/model.gguf.partial").exists());
}

#[test]
fn hf_interrupted_download_resumes() {
    let server = Server::start();
    let model = fake_gguf(300_000, 34);
    server.add("/o/r/resolve/main/m.gguf", model.clone());
    server.cut("/o/r/resolve/main/m.gguf", 100_000, 1);
    let tmp = tempfile::tempdir().unwrap();
    let p = puller(&server.base, tmp.path());
    let err = p.pull_spec("hf:o/r/m.gguf", None, None, &NoProgress).unwrap_err();
    assert!(err.is_resumable(), "{err}");
    assert!(!tmp.path().join("models/m/model.gguf").exists());
    let path = p
        .pull_spec("hf:o/r/m.gguf", None, Some(&sha256_hex(&model)), &NoProgress)
        .unwrap();
    assert_eq!(fs::read(path).unwrap(), model);
    let last = server.requests().pop().unwrap();
    assert!(last
        .headers
        .get("range")
        .is_some_and(|r| r.starts_with("bytes=") && r != "bytes=0-"));
}

#[test]
fn hf_complete_partial_is_finished_on_416() {
    let server = Server::start();
    let model = fake_gguf(4000, 35);
    server.add("/o/r/resolve/main/m.gguf", model.clone());
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("models/m");
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("model.gguf.partial"), &model).unwrap();
    let path = puller(&server.base, tmp.path())
        .pull_spec("hf:o/r/m.gguf", None, Some(&sha256_hex(&model)), &NoProgress)
        .unwrap();
    assert_eq!(fs::read(path).unwrap(), model);
    let reqs = server.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].headers.get("range").map(String::as_str), Some("bytes=4000-"));
}

#[test]
fn hf_non_gguf_file_is_refused() {
    let server = Server::start();
    server.add("/o/r/resolve/main/readme.gguf", b"<html>login</html>".to_vec());
    let tmp = tempfile::tempdir().unwrap();
    let err = puller(&server.base, tmp.path())
        .pull_spec("hf:o/r/readme.gguf", None, None, &NoProgress)
        .unwrap_err();
    assert!(matches!(err, PullError::NotGguf { .. }), "{err}");
    assert!(!tmp.path().join("models/readme/model.gguf").exists());
}

#[test]
fn hf_id_cannot_shadow_a_catalog_model() {
    let tmp = tempfile::tempdir().unwrap();
    let err = puller("http://127.0.0.1:9", tmp.path())
        .pull_spec("hf:o/r/m.gguf", Some("smollm2-135m"), None, &NoProgress)
        .unwrap_err();
    assert!(err.to_string().contains("catalog"), "{err}");
    let err = puller("http://127.0.0.1:9", tmp.path())
        .pull_spec("hf:o/r/m.gguf", Some("../evil"), None, &NoProgress)
        .unwrap_err();
    assert!(matches!(err, PullError::InvalidSpec { .. }), "{err}");
}

#[test]
fn server_ignoring_range_restarts_from_zero() {
    let server = Server::start();
    let model = fake_gguf(200_000, 36);
    server.add("/o/r/resolve/main/m.gguf", model.clone());
    server.no_ranges("/o/r/resolve/main/m.gguf");
    server.cut("/o/r/resolve/main/m.gguf", 50_000, 1);
    let tmp = tempfile::tempdir().unwrap();
    let p = puller(&server.base, tmp.path());
    assert!(p
        .pull_spec("hf:o/r/m.gguf", None, None, &NoProgress)
        .unwrap_err()
        .is_resumable());
    // The second answer is a full 200: the partial bytes must be replaced, not appended to.
    let path = p
        .pull_spec("hf:o/r/m.gguf", None, Some(&sha256_hex(&model)), &NoProgress)
        .unwrap();
    assert_eq!(fs::read(path).unwrap(), model);
    assert!(server.requests()[1].headers.contains_key("range"));
}

#[test]
fn stalled_server_times_out_with_the_url() {
    let server = Server::start();
    server.add("/o/r/resolve/main/slow.gguf", fake_gguf(100, 37));
    server.delay("/o/r/resolve/main/slow.gguf", 3000);
    let tmp = tempfile::tempdir().unwrap();
    let p = puller(&server.base, tmp.path())
        .with_timeout(std::time::Duration::from_millis(300))
        .unwrap();
    let t = std::time::Instant::now();
    let err = p.pull_spec("hf:o/r/slow.gguf", None, None, &NoProgress).unwrap_err();
    assert!(
        t.elapsed() < std::time::Duration::from_secs(2),
        "took {:?}",
        t.elapsed()
    );
    assert!(err.to_string().contains("/o/r/resolve/main/slow.gguf"), "{err}");
}
