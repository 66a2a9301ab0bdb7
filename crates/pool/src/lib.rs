//! # pool — which models are resident, within a memory budget
//!
//! Why: a model loaded into memory that sits idle is memory nobody else can use. The pool
//! loads models on first use, lets concurrent requests for a loading model wait for the one
//! load, and when a load would exceed the budget evicts idle models least-recently-used first
//! by their measured bytes — never a model with requests in flight, never a pinned one. A
//! model idle longer than its keep-alive is unloaded by a reaper.
//!
//! The pool is generic over what it holds ([`Resident`]) and how it loads it ([`Loader`]),
//! so the policy is tested here without models and the server plugs in llama.cpp engines
//! and candle encoders.

use serde::Serialize;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{watch, Notify};

/// Something the pool keeps in memory.
pub trait Resident: Send + Sync + 'static {
    /// Measured bytes while resident (weights + KV cache).
    fn bytes(&self) -> u64;
}

/// Loads models by id (blocking; the pool runs it off the async threads).
pub trait Loader<M>: Send + Sync + 'static {
    /// Bytes a load is expected to take, checked against the budget before loading.
    fn estimate(&self, id: &str) -> Result<u64, String>;
    fn load(&self, id: &str) -> Result<M, String>;
}

/// Per-model residency policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Policy {
    /// Unload after this long unused (`None`: stay until evicted for room).
    pub keep_alive: Option<Duration>,
    /// Never evict.
    pub pin: bool,
}

impl Default for Policy {
    fn default() -> Self {
        Self { keep_alive: Some(Duration::from_secs(300)), pin: false }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    #[error("unknown model `{0}`")]
    Unknown(String),
    #[error("loading `{id}` failed: {reason}")]
    LoadFailed { id: String, reason: String },
    #[error("`{id}` needs {need} bytes but only {free} of the {budget}-byte budget can be freed (the rest is in use or pinned)")]
    NoRoom { id: String, need: u64, free: u64, budget: u64 },
    #[error("timed out waiting for room to load `{0}`")]
    Timeout(String),
}

struct Slot<M> {
    model: Arc<M>,
    bytes: u64,
    leases: AtomicUsize,
    last_used: Mutex<Instant>,
    keep_alive: Mutex<Option<Duration>>,
    pin: bool,
    loaded_at: Instant,
    load_time: Duration,
}

enum Entry<M> {
    Loading { estimate: u64, done: watch::Receiver<Option<Result<(), String>>> },
    Ready(Arc<Slot<M>>),
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct PoolCounters {
    pub loads: AtomicU64,
    pub load_failures: AtomicU64,
    pub evictions: AtomicU64,
    pub expirations: AtomicU64,
}

struct Inner<M> {
    budget: u64,
    loader: Arc<dyn Loader<M>>,
    policies: HashMap<String, Policy>,
    entries: Mutex<HashMap<String, Entry<M>>>,
    room: Notify,
    wait_for_room: Duration,
    counters: PoolCounters,
}

/// A shared handle to the pool.
pub struct Pool<M> {
    inner: Arc<Inner<M>>,
}

impl<M> Clone for Pool<M> {
    fn clone(&self) -> Self {
        Self { inner: self.inner.clone() }
    }
}

/// A model in use. While any lease exists the model is not evicted.
pub struct Lease<M: Resident> {
    slot: Arc<Slot<M>>,
    inner: Arc<Inner<M>>,
}

impl<M: Resident> std::ops::Deref for Lease<M> {
    type Target = M;
    fn deref(&self) -> &M {
        &self.slot.model
    }
}

impl<M: Resident> Lease<M> {
    pub fn model(&self) -> &Arc<M> {
        &self.slot.model
    }
}

impl<M: Resident> Drop for Lease<M> {
    fn drop(&mut self) {
        *self.slot.last_used.lock().expect("poisoned") = Instant::now();
        if self.slot.leases.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.inner.room.notify_waiters();
        }
    }
}

/// One resident model, for `ps` and the admin API.
#[derive(Debug, Clone, Serialize)]
pub struct ResidentInfo {
    pub id: String,
    pub bytes: u64,
    pub in_use: usize,
    pub pinned: bool,
    pub idle_s: f64,
    pub keep_alive_s: Option<f64>,
    pub resident_s: f64,
    pub load_s: f64,
    pub loading: bool,
}

impl<M: Resident> Pool<M> {
    /// A pool of the models named in `policies`, within `budget` bytes. Loads that find no
    /// room wait up to `wait_for_room` for leases to end, then fail with [`PoolError::NoRoom`].
    pub fn new(budget: u64, loader: Arc<dyn Loader<M>>, policies: HashMap<String, Policy>, wait_for_room: Duration) -> Self {
        Self {
            inner: Arc::new(Inner {
                budget,
                loader,
                policies,
                entries: Mutex::new(HashMap::new()),
                room: Notify::new(),
                wait_for_room,
                counters: PoolCounters::default(),
            }),
        }
    }

    pub fn budget(&self) -> u64 {
        self.inner.budget
    }

    pub fn counters(&self) -> &PoolCounters {
        &self.inner.counters
    }

    pub fn knows(&self, id: &str) -> bool {
        self.inner.policies.contains_key(id)
    }

    /// Bytes held by resident models plus loads in flight.
    pub fn used(&self) -> u64 {
        let entries = self.inner.entries.lock().expect("poisoned");
        used_bytes(&entries)
    }

    /// Get `id`, loading it if needed. `keep_alive` overrides the model's policy from now on
    /// (as a request's `keep_alive` does).
    pub async fn acquire(&self, id: &str, keep_alive: Option<Duration>) -> Result<Lease<M>, PoolError> {
        let policy = self.inner.policies.get(id).ok_or_else(|| PoolError::Unknown(id.to_owned()))?.clone();
        let deadline = Instant::now() + self.inner.wait_for_room;
        loop {
            let room = self.inner.room.notified();
            let mut evicted: Vec<Arc<Slot<M>>> = Vec::new();
            let step = {
                let mut entries = self.inner.entries.lock().expect("poisoned");
                match entries.get(id) {
                    Some(Entry::Ready(slot)) => {
                        slot.leases.fetch_add(1, Ordering::AcqRel);
                        *slot.last_used.lock().expect("poisoned") = Instant::now();
                        if keep_alive.is_some() {
                            *slot.keep_alive.lock().expect("poisoned") = keep_alive;
                        }
                        return Ok(Lease { slot: slot.clone(), inner: self.inner.clone() });
                    }
                    Some(Entry::Loading { done, .. }) => Step::Wait(done.clone()),
                    None => {
                        let need = self.inner.loader.estimate(id).map_err(|reason| PoolError::LoadFailed { id: id.into(), reason })?;
                        match make_room(&mut entries, need, self.inner.budget, &mut evicted) {
                            Ok(()) => {
                                let (tx, rx) = watch::channel(None);
                                entries.insert(id.to_owned(), Entry::Loading { estimate: need, done: rx });
                                Step::Load(tx)
                            }
                            Err(free) => Step::NoRoom { need, free },
                        }
                    }
                }
            };
            for slot in &evicted {
                self.inner.counters.evictions.fetch_add(1, Ordering::Relaxed);
                tracing::info!(bytes = slot.bytes, "evicted a model to make room");
            }
            drop(evicted); // models are freed here, outside the lock
            match step {
                Step::Wait(mut done) => {
                    let _ = done.wait_for(|d| d.is_some()).await;
                    if let Some(Err(reason)) = done.borrow().clone() {
                        return Err(PoolError::LoadFailed { id: id.into(), reason });
                    }
                }
                Step::Load(tx) => {
                    let result = self.load(id, &policy, keep_alive).await;
                    let _ = tx.send(Some(result.clone().map(|_| ())));
                    self.inner.room.notify_waiters();
                    if let Err(reason) = result {
                        return Err(PoolError::LoadFailed { id: id.into(), reason });
                    }
                }
                Step::NoRoom { need, free } => {
                    if Instant::now() >= deadline {
                        return Err(PoolError::NoRoom { id: id.into(), need, free, budget: self.inner.budget });
                    }
                    let _ = tokio::time::timeout_at(deadline.into(), room).await;
                }
            }
        }
    }

    async fn load(&self, id: &str, policy: &Policy, keep_alive: Option<Duration>) -> Result<(), String> {
        let loader = self.inner.loader.clone();
        let owned = id.to_owned();
        let t0 = Instant::now();
        let loaded = tokio::task::spawn_blocking(move || loader.load(&owned)).await.map_err(|e| format!("load task failed: {e}"))?;
        let mut entries = self.inner.entries.lock().expect("poisoned");
        match loaded {
            Ok(model) => {
                self.inner.counters.loads.fetch_add(1, Ordering::Relaxed);
                let slot = Slot {
                    bytes: model.bytes(),
                    model: Arc::new(model),
                    leases: AtomicUsize::new(0),
                    last_used: Mutex::new(Instant::now()),
                    keep_alive: Mutex::new(keep_alive.or(policy.keep_alive)),
                    pin: policy.pin,
                    loaded_at: Instant::now(),
                    load_time: t0.elapsed(),
                };
                tracing::info!(model = id, bytes = slot.bytes, load_ms = slot.load_time.as_millis() as u64, "model loaded");
                entries.insert(id.to_owned(), Entry::Ready(Arc::new(slot)));
                Ok(())
            }
            Err(e) => {
                self.inner.counters.load_failures.fetch_add(1, Ordering::Relaxed);
                entries.remove(id);
                Err(e)
            }
        }
    }

    /// Load without using (admin `load`).
    pub async fn preload(&self, id: &str) -> Result<(), PoolError> {
        self.acquire(id, None).await.map(drop)
    }

    /// Unload now if idle. Returns whether it was unloaded; `Err` if it is in use.
    pub fn unload(&self, id: &str) -> Result<bool, PoolError> {
        if !self.knows(id) {
            return Err(PoolError::Unknown(id.to_owned()));
        }
        let removed = {
            let mut entries = self.inner.entries.lock().expect("poisoned");
            match entries.get(id) {
                Some(Entry::Ready(slot)) if slot.leases.load(Ordering::Acquire) == 0 => entries.remove(id),
                Some(Entry::Ready(_)) | Some(Entry::Loading { .. }) => {
                    return Err(PoolError::LoadFailed { id: id.into(), reason: "model is in use".into() })
                }
                None => None,
            }
        };
        let unloaded = removed.is_some();
        drop(removed);
        if unloaded {
            self.inner.room.notify_waiters();
        }
        Ok(unloaded)
    }

    /// Unload idle models whose keep-alive has passed. Returns how many.
    pub fn expire(&self) -> usize {
        let now = Instant::now();
        let expired: Vec<Entry<M>> = {
            let mut entries = self.inner.entries.lock().expect("poisoned");
            let ids: Vec<String> = entries
                .iter()
                .filter_map(|(id, e)| match e {
                    Entry::Ready(s) if !s.pin && s.leases.load(Ordering::Acquire) == 0 => {
                        let ka = (*s.keep_alive.lock().expect("poisoned"))?;
                        (now.duration_since(*s.last_used.lock().expect("poisoned")) >= ka).then(|| id.clone())
                    }
                    _ => None,
                })
                .collect();
            ids.iter().filter_map(|id| entries.remove(id)).collect()
        };
        let n = expired.len();
        if n > 0 {
            self.inner.counters.expirations.fetch_add(n as u64, Ordering::Relaxed);
            self.inner.room.notify_waiters();
        }
        n
    }

    /// Run [`Pool::expire`] every `every` until the pool is dropped.
    pub fn spawn_reaper(&self, every: Duration) -> tokio::task::JoinHandle<()> {
        let weak = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                let Some(inner) = weak.upgrade() else { return };
                Pool { inner }.expire();
            }
        })
    }

    /// Resident and loading models.
    pub fn list(&self) -> Vec<ResidentInfo> {
        let now = Instant::now();
        let entries = self.inner.entries.lock().expect("poisoned");
        let mut out: Vec<ResidentInfo> = entries
            .iter()
            .map(|(id, e)| match e {
                Entry::Ready(s) => ResidentInfo {
                    id: id.clone(),
                    bytes: s.bytes,
                    in_use: s.leases.load(Ordering::Acquire),
                    pinned: s.pin,
                    idle_s: now.duration_since(*s.last_used.lock().expect("poisoned")).as_secs_f64(),
                    keep_alive_s: s.keep_alive.lock().expect("poisoned").map(|d| d.as_secs_f64()),
                    resident_s: now.duration_since(s.loaded_at).as_secs_f64(),
                    load_s: s.load_time.as_secs_f64(),
                    loading: false,
                },
                Entry::Loading { estimate, .. } => ResidentInfo {
                    id: id.clone(),
                    bytes: *estimate,
                    in_use: 0,
                    pinned: false,
                    idle_s: 0.0,
                    keep_alive_s: None,
                    resident_s: 0.0,
                    load_s: 0.0,
                    loading: true,
                },
            })
            .collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }

    /// The model if resident (no load, no lease): for metrics.
    pub fn peek(&self, id: &str) -> Option<Arc<M>> {
        match self.inner.entries.lock().expect("poisoned").get(id) {
            Some(Entry::Ready(s)) => Some(s.model.clone()),
            _ => None,
        }
    }
}

enum Step {
    Wait(watch::Receiver<Option<Result<(), String>>>),
    Load(watch::Sender<Option<Result<(), String>>>),
    NoRoom { need: u64, free: u64 },
}

fn used_bytes<M>(entries: &HashMap<String, Entry<M>>) -> u64 {
    entries
        .values()
        .map(|e| match e {
            Entry::Ready(s) => s.bytes,
            Entry::Loading { estimate, .. } => *estimate,
        })
        .sum()
}

/// Evict idle, unpinned models, least recently used first, until `need` fits. On failure
/// nothing is evicted and the bytes that could have been freed are returned.
fn make_room<M>(entries: &mut HashMap<String, Entry<M>>, need: u64, budget: u64, evicted: &mut Vec<Arc<Slot<M>>>) -> Result<(), u64> {
    let used = used_bytes(entries);
    if used + need <= budget {
        return Ok(());
    }
    let mut idle: Vec<(String, Instant, u64)> = entries
        .iter()
        .filter_map(|(id, e)| match e {
            Entry::Ready(s) if !s.pin && s.leases.load(Ordering::Acquire) == 0 => {
                Some((id.clone(), *s.last_used.lock().expect("poisoned"), s.bytes))
            }
            _ => None,
        })
        .collect();
    idle.sort_by_key(|x| x.1);
    let evictable: u64 = idle.iter().map(|x| x.2).sum();
    let free_now = budget.saturating_sub(used);
    if free_now + evictable < need {
        return Err(free_now + evictable);
    }
    let mut freed = 0;
    for (id, _, bytes) in idle {
        if free_now + freed >= need {
            break;
        }
        if let Some(Entry::Ready(s)) = entries.remove(&id) {
            evicted.push(s);
            freed += bytes;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
