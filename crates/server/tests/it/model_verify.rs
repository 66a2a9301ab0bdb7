//! The model hash the audit records is verified, not trusted from a marker: a pulled file
//! whose size or mtime changed since it was hashed is hashed again at load, and a file changed
//! in place (same size, one byte) is refused with an error naming the model and the file; an
//! untouched file loads on its marker's stamp alone (no re-hash).

use pool::Loader;
use server::models::{CacheLoader, Loaded};
use std::io::{Seek, SeekFrom, Write};
use std::path::Path;

/// (inode, mtime) of a file: a re-hash rewrites the marker (a new file renamed into place).
fn identity(p: &Path) -> (u64, std::time::SystemTime) {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(p).unwrap();
    (m.ino(), m.modified().unwrap())
}

#[test]
fn a_pulled_model_changed_in_place_is_refused_and_an_untouched_one_loads_without_rehashing() {
    let id = "smollm2-135m";
    let src = testkit::model_file(id);
    assert!(
        src.is_file(),
        "{} is missing: run `rightsize pull {id}` (the README's test command does)",
        src.display()
    );
    let tmp = tempfile::tempdir().unwrap();
    let cache = supply::Cache::new(tmp.path());
    let file = cache.model_file(id);
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::copy(&src, &file).unwrap();
    // Verified as a pull leaves it: hashed against the catalog, marker with the file's stamp.
    let entry = supply::Catalog::builtin().get(id).unwrap().clone();
    assert!(cache.verify(&entry, &supply::NoProgress).unwrap());
    let marker = supply::marker_path(&file);
    let (_, stamp) = supply::read_marker_stamped(&file).unwrap();
    assert_eq!(
        stamp,
        supply::Stamp::of(&file),
        "the marker records the file's size and mtime"
    );

    let cfg =
        server::ServerConfig::from_toml(&format!("[[model]]\nid = \"{id}\"\nctx = 256\nmax_sequences = 1\n")).unwrap();
    let loader = CacheLoader {
        cache: cache.clone(),
        models: cfg.models.iter().map(|m| (m.id.clone(), m.clone())).collect(),
    };
    let hashes = server::audit::model_hashes(&cache, &cfg.models);
    assert_eq!(
        hashes.get(id),
        entry.sha256.as_ref(),
        "the audit's hash is the verified one"
    );

    // Untouched: loads, and the marker is not rewritten (no re-hash: the stamp matched).
    let before = identity(&marker);
    match loader.load(id, None) {
        Ok(Loaded::Decoder(_)) => {}
        Ok(_) => panic!("{id} loaded as an encoder"),
        Err(e) => panic!("an untouched verified file must load: {e}"),
    }
    assert_eq!(
        identity(&marker),
        before,
        "an untouched file is not hashed again at load"
    );

    // Tampered: one byte changed in place (same size), mtime moved on.
    let mtime = std::fs::metadata(&file).unwrap().modified().unwrap();
    let mut f = std::fs::OpenOptions::new().read(true).write(true).open(&file).unwrap();
    let at = f.metadata().unwrap().len() / 2;
    let mut byte = [0u8; 1];
    f.seek(SeekFrom::Start(at)).unwrap();
    std::io::Read::read_exact(&mut f, &mut byte).unwrap();
    f.seek(SeekFrom::Start(at)).unwrap();
    f.write_all(&[byte[0] ^ 0x01]).unwrap();
    f.set_modified(mtime + std::time::Duration::from_secs(5)).unwrap();
    drop(f);
    assert_eq!(
        std::fs::metadata(&file).unwrap().len(),
        entry.size.unwrap(),
        "same size"
    );

    let err = match loader.load(id, None) {
        Ok(_) => panic!("a file changed since it was verified must not load"),
        Err(e) => {
            assert_eq!(e.kind, pool::LoadErrorKind::Refused, "{e}");
            e.message
        }
    };
    assert!(
        err.contains(&format!("`{id}`"))
            && err.contains(&file.display().to_string())
            && err.contains("changed since it was verified"),
        "{err}"
    );
    assert!(
        err.contains(entry.sha256.as_deref().unwrap()),
        "names the verified digest: {err}"
    );
    // Still refused on the next try (the marker is not re-fitted to the changed file), and
    // `prepare` (parse at start) refuses it too; the audit gets no hash for it.
    assert!(loader.load(id, None).is_err());
    assert!(loader.prepare(id).is_err());
    assert!(!server::audit::model_hashes(&cache, &cfg.models).contains_key(id));
    assert_eq!(
        supply::read_marker(&file),
        entry.sha256,
        "the marker still holds the pulled digest"
    );
}
