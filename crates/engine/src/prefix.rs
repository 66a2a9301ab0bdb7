//! Prompt-prefix cache: the KV cells of a chat prompt's fixed beginning — the template's
//! system prompt and every turn before the last message — kept so that the next prompt that
//! starts the same way restores them instead of computing them again.
//!
//! Why: on a small model most of a short chat prompt is the template's preamble (SmolLM2
//! adds a 24-token system prompt to a 7-token question), and a task sends the same system
//! prompt and instructions with every input. Restoring ~0.5 MB of cells takes well under a
//! millisecond; computing them is most of the time to first token on a CPU.
//!
//! Where the prefix ends is decided by the engine from the chat template (`Engine::submit`);
//! the worker always ends a prefill step at that point, captures the sequence's state there
//! (`llama_state_seq_get_data`) the second time a prefix is seen, and later restores it into
//! any sequence slot (`llama_state_seq_set_data`). A new, a captured and a restored prefix
//! are all followed by the same steps, so an answer does not depend on the cache's state
//! (llama.cpp's results do depend on where a prompt is cut into steps).
//!
//! The store is process-wide and keyed by the model file (path, size, modification time)
//! and the KV layout, so it outlives an engine: a model evicted from the pool and loaded
//! again starts with its prefixes warm. It is bounded in bytes and forgets least recently
//! used prefixes first.

use llama_cpp_2::context::session::SeqState;
use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

/// Bytes of prefix state kept for all models together.
pub const MAX_BYTES: usize = 64 << 20;
/// A prefix larger than this is not cached (a long conversation's history, say).
pub const MAX_ENTRY_BYTES: usize = 8 << 20;
/// Shorter prefixes are not worth a split step.
pub const MIN_TOKENS: usize = 8;

/// Which model file and KV layout a state belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Scope {
    path: PathBuf,
    len: u64,
    modified: Option<std::time::SystemTime>,
    /// Flash attention and offload change the state's byte layout.
    layout: String,
}

impl Scope {
    /// The file as the model was loaded from it (`len`, `modified`: see `Model::file_stamp`).
    pub fn new(path: &Path, len: u64, modified: Option<std::time::SystemTime>, layout: String) -> Self {
        Self {
            path: path.to_owned(),
            len,
            modified,
            layout,
        }
    }
}

#[derive(Default)]
struct Store {
    entries: HashMap<(Scope, Vec<i32>), (Arc<SeqState>, u64)>,
    /// Hashes of prefixes seen once: a prefix is captured the second time it comes.
    seen: HashSet<u64>,
    bytes: usize,
    tick: u64,
}

fn store() -> &'static Mutex<Store> {
    static STORE: OnceLock<Mutex<Store>> = OnceLock::new();
    STORE.get_or_init(Default::default)
}

fn lock() -> std::sync::MutexGuard<'static, Store> {
    store().lock().unwrap_or_else(|e| e.into_inner())
}

fn fingerprint(scope: &Scope, tokens: &[i32]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    scope.hash(&mut h);
    tokens.hash(&mut h);
    h.finish()
}

/// What to do with a prompt's prefix at admission.
pub enum Plan {
    /// Restore these cells.
    Restore(Arc<SeqState>),
    /// Seen before: split the prefill at the prefix and capture it.
    Capture,
    /// First sight (or too large): prefill as usual.
    Nothing,
}

pub fn plan(scope: &Scope, prefix: &[i32], bytes_estimate: usize) -> Plan {
    if prefix.len() < MIN_TOKENS || bytes_estimate > MAX_ENTRY_BYTES {
        return Plan::Nothing;
    }
    let mut s = lock();
    s.tick += 1;
    let tick = s.tick;
    if let Some((state, last)) = s.entries.get_mut(&(scope.clone(), prefix.to_vec())) {
        *last = tick;
        return Plan::Restore(state.clone());
    }
    if s.seen.len() >= 4096 {
        s.seen.clear();
    }
    match s.seen.insert(fingerprint(scope, prefix)) {
        true => Plan::Nothing,
        false => Plan::Capture,
    }
}

pub fn insert(scope: &Scope, prefix: &[i32], state: SeqState) {
    let size = state.byte_len();
    if size > MAX_ENTRY_BYTES {
        return;
    }
    let mut s = lock();
    s.tick += 1;
    let tick = s.tick;
    if let Some((old, _)) = s
        .entries
        .insert((scope.clone(), prefix.to_vec()), (Arc::new(state), tick))
    {
        s.bytes -= old.byte_len();
    }
    s.bytes += size;
    while s.bytes > MAX_BYTES {
        let Some(oldest) = s.entries.iter().min_by_key(|(_, (_, t))| *t).map(|(k, _)| k.clone()) else {
            break;
        };
        if let Some((gone, _)) = s.entries.remove(&oldest) {
            s.bytes -= gone.byte_len();
        }
    }
}

/// A state that could not be restored (layout changed): never offer it again.
pub fn forget(scope: &Scope, prefix: &[i32]) {
    let mut s = lock();
    if let Some((gone, _)) = s.entries.remove(&(scope.clone(), prefix.to_vec())) {
        s.bytes -= gone.byte_len();
    }
}

/// Bytes held for all models.
pub fn held_bytes() -> usize {
    lock().bytes
}

/// Longest common prefix of two token sequences.
pub fn common_prefix(a: &[i32], b: &[i32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_prefix_stops_at_the_first_difference() {
        assert_eq!(common_prefix(&[1, 2, 3, 4], &[1, 2, 9, 4]), 2);
        assert_eq!(common_prefix(&[1, 2], &[1, 2, 3]), 2);
        assert_eq!(common_prefix(&[], &[1]), 0);
    }

    #[test]
    fn a_prefix_is_captured_the_second_time_it_is_seen_and_never_when_short_or_huge() {
        let scope = Scope {
            path: "/nonexistent/a.gguf".into(),
            len: 1,
            modified: None,
            layout: "t".into(),
        };
        let prefix: Vec<i32> = (100..120).collect();
        assert!(matches!(plan(&scope, &prefix, 1000), Plan::Nothing));
        assert!(matches!(plan(&scope, &prefix, 1000), Plan::Capture));
        assert!(matches!(plan(&scope, &prefix[..MIN_TOKENS - 1], 10), Plan::Nothing));
        let other: Vec<i32> = (200..240).collect();
        plan(&scope, &other, MAX_ENTRY_BYTES + 1);
        assert!(matches!(plan(&scope, &other, MAX_ENTRY_BYTES + 1), Plan::Nothing));
    }
}
