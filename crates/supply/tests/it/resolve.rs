//! `resolve_model`: ids and paths to files to load.

use crate::common::*;
use std::fs;
use supply::{resolve_model, Cache, CacheStatus, Catalog, PullError};

#[test]
fn unknown_id_is_an_error_listing_catalog_ids() {
    let tmp = tempfile::tempdir().unwrap();
    let err = resolve_model(&Cache::new(tmp.path()), "llama-70b").unwrap_err();
    assert!(matches!(err, PullError::UnknownModel { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("llama-70b") && msg.contains("qwen2.5-0.5b"), "{msg}");
}

#[test]
fn uncached_catalog_id_says_how_to_pull() {
    let tmp = tempfile::tempdir().unwrap();
    let err = resolve_model(&Cache::new(tmp.path()), "qwen2.5-1.5b").unwrap_err();
    assert!(matches!(err, PullError::NotCached { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        "model `qwen2.5-1.5b` is not in the cache; run `rightsize pull qwen2.5-1.5b`"
    );
}

#[test]
fn cached_catalog_id_with_wrong_size_is_reported_corrupt() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = Cache::new(tmp.path());
    fs::create_dir_all(cache.model_dir("smollm2-135m")).unwrap();
    fs::write(cache.model_file("smollm2-135m"), b"GGUF truncated").unwrap();
    let err = resolve_model(&cache, "smollm2-135m").unwrap_err();
    assert!(matches!(err, PullError::CorruptCache { .. }), "{err}");
    assert!(err.to_string().contains("rightsize pull smollm2-135m"), "{err}");
}

#[test]
fn existing_paths_resolve_to_themselves_and_missing_paths_fail() {
    let tmp = tempfile::tempdir().unwrap();
    let f = tmp.path().join("x.gguf");
    fs::write(&f, fake_gguf(10, 1)).unwrap();
    let cache = Cache::new(tmp.path().join("cache"));
    assert_eq!(resolve_model(&cache, f.to_str().unwrap()).unwrap(), f);
    let err = resolve_model(&cache, "./missing/x.gguf").unwrap_err();
    assert!(matches!(err, PullError::LocalNotFound { .. }), "{err}");
}

#[test]
fn encoder_resolves_to_its_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = Cache::new(tmp.path());
    fs::create_dir_all(cache.model_dir("minilm-l6")).unwrap();
    fs::write(cache.model_dir("minilm-l6").join("model.safetensors"), b"x").unwrap();
    assert_eq!(
        resolve_model(&cache, "minilm-l6").unwrap(),
        cache.model_dir("minilm-l6")
    );
}

/// Reads (never writes) the real cache the lead populated by hand.
#[test]
fn real_cache_models_resolve_if_present() {
    let cache = Cache::new(Cache::default_root());
    let catalog = Catalog::builtin();
    let mut missing = Vec::new();
    for id in supply::default_set() {
        let entry = catalog.get(id).unwrap();
        match cache.status(entry) {
            CacheStatus::Missing => missing.push(id),
            CacheStatus::Present { bytes, verified } => {
                let path = resolve_model(&cache, id).unwrap();
                assert_eq!(path, cache.entry_path(entry));
                if entry.kind == supply::EntryKind::Gguf {
                    assert_eq!(Some(bytes), entry.size, "{id}");
                }
                println!("{id}: {bytes} bytes, verified={verified}");
            }
        }
    }
    if !missing.is_empty() {
        testkit::skip_or_fail(&format!(
            "{} not in {} (checked the others)",
            missing.iter().map(|s| s.to_string()).collect::<Vec<_>>().join(", "),
            cache.root().display()
        ));
    }
}
