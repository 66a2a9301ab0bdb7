//! Finding the real models the README's set-up pulls into the cache, and keeping the tests
//! that measure the whole process (its heap, its mappings) apart from the others.

use engine::{Engine, EngineConfig};
use std::path::PathBuf;
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Path of a cached catalog model; fails loudly when the set-up has not pulled it.
pub fn model_path(id: &str) -> PathBuf {
    let p = testkit::model_file(id);
    assert!(
        p.is_file(),
        "{} is missing: run `rightsize pull {id}` (the README's test command does)",
        p.display()
    );
    p
}

pub fn load(id: &str, cfg: EngineConfig) -> Engine {
    Engine::load(&model_path(id), cfg).unwrap_or_else(|e| panic!("loading {id}: {e}"))
}

pub fn small_cfg() -> EngineConfig {
    EngineConfig {
        n_ctx: 16 * 1024,
        n_seq_max: 16,
        ..Default::default()
    }
}

/// Every test file shares this process: a test that measures it takes `own_process`, every
/// other test `share_process`, so that the measurement sees no other test's engines.
static PROCESS: RwLock<()> = RwLock::new(());

/// Held for the whole test by the tests that do not measure the process.
pub fn share_process() -> RwLockReadGuard<'static, ()> {
    PROCESS.read().unwrap_or_else(|e| e.into_inner())
}

/// Held for the whole test by a test that measures the process: no other test runs meanwhile.
pub fn own_process() -> RwLockWriteGuard<'static, ()> {
    PROCESS.write().unwrap_or_else(|e| e.into_inner())
}
