//! # pool — which models are resident, within a memory budget
//!
//! Why: a model loaded into memory that sits idle is memory nobody else can use. The pool
//! loads models on first use, lets concurrent requests for a loading model wait for the one
//! load, and when a load would exceed the budget evicts idle models least-recently-used first
//! by their measured bytes — never a model with requests in flight, never a pinned one. A
//! model idle longer than its keep-alive is unloaded by a reaper.
//!
//! **Asleep.** An evicted model may leave a small part behind ([`Resident::asleep`]): for a
//! llama.cpp decoder, the parsed file (vocabulary, tensor map) without its weight pages, KV
//! cache or thread: 19–58 MB counted instead of 0.14–1.2 GB. Loading it again from that part
//! skips the file parse, which is most of a cold load (SmolLM2-135M: ready in 7–13 ms
//! instead of 124–332 ms). What stays asleep still counts against the budget, and is dropped, least
//! recently used first, when a load needs the room; `unload` with `forget` drops it at once.
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
pub trait Resident: Send + Sync + Sized + 'static {
    /// What an evicted model leaves behind to be loaded again faster (`()` if nothing).
    type Asleep: Send + Sync + 'static;
    /// Measured bytes while resident (weights + KV cache + everything else it holds).
    fn bytes(&self) -> u64;
    /// The part to keep when this model is evicted, and the bytes it holds then (called under
    /// the pool's lock: cheap). `None`: nothing stays.
    fn asleep(&self) -> Option<(Self::Asleep, u64)>;
}

/// Loads models by id (blocking; the pool runs it off the async threads).
pub trait Loader<M: Resident>: Send + Sync + 'static {
    /// Bytes a load is expected to take, checked against the budget before loading; `asleep`
    /// is what the model's last eviction left, when there is one.
    fn estimate(&self, id: &str, asleep: Option<&M::Asleep>) -> Result<u64, LoadError>;
    /// Load `id`, starting from `asleep` when given.
    fn load(&self, id: &str, asleep: Option<M::Asleep>) -> Result<M, LoadError>;
    /// What `id` would leave asleep, made without loading it whole (see [`Pool::prepare`]).
    fn prepare(&self, _id: &str) -> Result<Option<(M::Asleep, u64)>, LoadError> {
        Ok(None)
    }
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
        Self {
            keep_alive: Some(Duration::from_secs(300)),
            pin: false,
        }
    }
}

/// Why a [`Loader`] could not size, load or prepare a model: what kind of failure, and the
/// loader's message (shown as it is). Cloned to every caller waiting for the same load.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct LoadError {
    pub kind: LoadErrorKind,
    pub message: String,
}

/// The kind of a [`LoadError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadErrorKind {
    /// The loader has no model by this id.
    Unknown,
    /// The model's files are not on this machine, or not whole (not pulled, wrong size).
    Missing,
    /// The files changed since they were verified: refused, not loaded.
    Refused,
    /// Reading or starting the model failed (or the thread loading it did).
    Failed,
}

impl LoadError {
    pub fn new(kind: LoadErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    /// A [`LoadErrorKind::Failed`] with `e`'s text.
    pub fn failed(e: impl std::fmt::Display) -> Self {
        Self::new(LoadErrorKind::Failed, e.to_string())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    #[error("unknown model `{0}`")]
    Unknown(String),
    #[error("loading `{id}` failed: {reason}")]
    LoadFailed { id: String, reason: LoadError },
    /// `unload` of a model with leases (or a load) in flight. The text is the admin API's
    /// from before this had its own variant, kept as it was.
    #[error("loading `{0}` failed: model is in use")]
    InUse(String),
    #[error("`{id}` needs {need} bytes but only {free} of the {budget}-byte budget can be freed (the rest is in use or pinned)")]
    NoRoom {
        id: String,
        need: u64,
        free: u64,
        budget: u64,
    },
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

/// What an evicted model left (see "Asleep" in the module docs).
struct Asleep<K> {
    kept: K,
    bytes: u64,
    last_used: Instant,
    since: Instant,
}

enum Entry<M: Resident> {
    Loading {
        estimate: u64,
        done: watch::Receiver<Option<Result<(), LoadError>>>,
    },
    Ready(Arc<Slot<M>>),
    Asleep(Asleep<M::Asleep>),
}

impl<M: Resident> Entry<M> {
    fn bytes(&self) -> u64 {
        match self {
            Entry::Ready(s) => s.bytes,
            Entry::Loading { estimate, .. } => *estimate,
            Entry::Asleep(a) => a.bytes,
        }
    }
}

/// A resident model's entry once it is evicted: asleep if it leaves something, else none.
fn evicted_entry<M: Resident>(slot: &Slot<M>) -> Option<Entry<M>> {
    let (kept, bytes) = slot.model.asleep()?;
    let last_used = *slot.last_used.lock().expect("poisoned");
    Some(Entry::Asleep(Asleep {
        kept,
        bytes,
        last_used,
        since: Instant::now(),
    }))
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct PoolCounters {
    /// Loads, including wakes.
    pub loads: AtomicU64,
    /// Loads that started from an asleep model.
    pub wakes: AtomicU64,
    pub load_failures: AtomicU64,
    pub evictions: AtomicU64,
    pub expirations: AtomicU64,
}

struct Inner<M: Resident> {
    budget: u64,
    loader: Arc<dyn Loader<M>>,
    policies: HashMap<String, Policy>,
    entries: Mutex<HashMap<String, Entry<M>>>,
    room: Notify,
    wait_for_room: Duration,
    counters: PoolCounters,
}

/// A shared handle to the pool.
pub struct Pool<M: Resident> {
    inner: Arc<Inner<M>>,
}

impl<M: Resident> Clone for Pool<M> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
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

/// Where a model in the pool stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Loading,
    Ready,
    /// Evicted, with a small part kept to load again faster (see the module docs).
    Asleep,
}

/// One model the pool holds something of, for `ps` and the admin API.
#[derive(Debug, Clone, Serialize)]
pub struct ResidentInfo {
    pub id: String,
    pub state: State,
    pub bytes: u64,
    pub in_use: usize,
    pub pinned: bool,
    pub idle_s: f64,
    pub keep_alive_s: Option<f64>,
    /// Seconds in this state.
    pub resident_s: f64,
    pub load_s: f64,
}

impl<M: Resident> Pool<M> {
    /// A pool of the models named in `policies`, within `budget` bytes. Loads that find no
    /// room wait up to `wait_for_room` for leases to end, then fail with [`PoolError::NoRoom`].
    pub fn new(
        budget: u64,
        loader: Arc<dyn Loader<M>>,
        policies: HashMap<String, Policy>,
        wait_for_room: Duration,
    ) -> Self {
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
        let policy = self
            .inner
            .policies
            .get(id)
            .ok_or_else(|| PoolError::Unknown(id.to_owned()))?
            .clone();
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
                        return Ok(Lease {
                            slot: slot.clone(),
                            inner: self.inner.clone(),
                        });
                    }
                    Some(Entry::Loading { done, .. }) => Step::Wait(done.clone()),
                    Some(Entry::Asleep(_)) | None => {
                        let kept = match entries.get(id) {
                            Some(Entry::Asleep(a)) => Some(&a.kept),
                            _ => None,
                        };
                        let need = self
                            .inner
                            .loader
                            .estimate(id, kept)
                            .map_err(|reason| PoolError::LoadFailed { id: id.into(), reason })?;
                        // What the last eviction left is taken out for the room check (the
                        // load replaces its bytes), and put back if there is no room.
                        let asleep = match entries.remove(id) {
                            Some(Entry::Asleep(a)) => Some(a),
                            _ => None,
                        };
                        match make_room(&mut entries, need, self.inner.budget, &mut evicted) {
                            Ok(()) => {
                                let (tx, rx) = watch::channel(None);
                                entries.insert(
                                    id.to_owned(),
                                    Entry::Loading {
                                        estimate: need,
                                        done: rx,
                                    },
                                );
                                Step::Load(tx, asleep.map(|a| a.kept))
                            }
                            Err(free) => {
                                if let Some(a) = asleep {
                                    entries.insert(id.to_owned(), Entry::Asleep(a));
                                }
                                Step::NoRoom { need, free }
                            }
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
                Step::Load(tx, asleep) => {
                    let result = self.load(id, &policy, keep_alive, asleep).await;
                    let _ = tx.send(Some(result.clone().map(|_| ())));
                    self.inner.room.notify_waiters();
                    if let Err(reason) = result {
                        return Err(PoolError::LoadFailed { id: id.into(), reason });
                    }
                }
                Step::NoRoom { need, free } => {
                    if Instant::now() >= deadline {
                        return Err(PoolError::NoRoom {
                            id: id.into(),
                            need,
                            free,
                            budget: self.inner.budget,
                        });
                    }
                    let _ = tokio::time::timeout_at(deadline.into(), room).await;
                }
            }
        }
    }

    async fn load(
        &self,
        id: &str,
        policy: &Policy,
        keep_alive: Option<Duration>,
        asleep: Option<M::Asleep>,
    ) -> Result<(), LoadError> {
        let loader = self.inner.loader.clone();
        let owned = id.to_owned();
        let t0 = Instant::now();
        let woke = asleep.is_some();
        let loaded = tokio::task::spawn_blocking(move || loader.load(&owned, asleep))
            .await
            .map_err(|e| LoadError::failed(format!("load task failed: {e}")))?;
        let mut entries = self.inner.entries.lock().expect("poisoned");
        match loaded {
            Ok(model) => {
                self.inner.counters.loads.fetch_add(1, Ordering::Relaxed);
                if woke {
                    self.inner.counters.wakes.fetch_add(1, Ordering::Relaxed);
                }
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
                tracing::info!(
                    model = id,
                    bytes = slot.bytes,
                    load_ms = slot.load_time.as_millis() as u64,
                    woke,
                    "model loaded"
                );
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

    /// Put `id` asleep without loading it whole (e.g. at start-up), so its first use is a
    /// wake. Nothing happens if it is already in the pool, leaves nothing asleep, or its
    /// asleep bytes do not fit in the budget as it is now (nothing is evicted for it).
    /// Returns whether it was put asleep.
    pub async fn prepare(&self, id: &str) -> Result<bool, PoolError> {
        if !self.knows(id) {
            return Err(PoolError::Unknown(id.to_owned()));
        }
        if self.inner.entries.lock().expect("poisoned").contains_key(id) {
            return Ok(false);
        }
        let loader = self.inner.loader.clone();
        let owned = id.to_owned();
        let made = tokio::task::spawn_blocking(move || loader.prepare(&owned))
            .await
            .map_err(|e| LoadError::failed(format!("prepare task failed: {e}")))
            .and_then(|made| made)
            .map_err(|reason| PoolError::LoadFailed { id: id.into(), reason })?;
        let Some((kept, bytes)) = made else { return Ok(false) };
        let refused = {
            let mut entries = self.inner.entries.lock().expect("poisoned");
            if entries.contains_key(id) || used_bytes(&entries) + bytes > self.inner.budget {
                Some(kept)
            } else {
                let now = Instant::now();
                entries.insert(
                    id.to_owned(),
                    Entry::Asleep(Asleep {
                        kept,
                        bytes,
                        last_used: now,
                        since: now,
                    }),
                );
                None
            }
        };
        Ok(refused.is_none()) // a refused part is freed here, outside the lock
    }

    /// Load without using (admin `load`).
    pub async fn preload(&self, id: &str) -> Result<(), PoolError> {
        self.acquire(id, None).await.map(drop)
    }

    /// Unload now if idle: the model falls asleep when it can, or with `forget` nothing of it
    /// stays. Returns whether anything was freed; `Err` if it is in use.
    pub fn unload(&self, id: &str, forget: bool) -> Result<bool, PoolError> {
        if !self.knows(id) {
            return Err(PoolError::Unknown(id.to_owned()));
        }
        let removed = {
            let mut entries = self.inner.entries.lock().expect("poisoned");
            match entries.get(id) {
                Some(Entry::Ready(slot)) if slot.leases.load(Ordering::Acquire) == 0 => {
                    let removed = entries.remove(id);
                    if let Some(Entry::Ready(slot)) = &removed {
                        if let Some(asleep) = evicted_entry(slot).filter(|_| !forget) {
                            entries.insert(id.to_owned(), asleep);
                        }
                    }
                    removed
                }
                Some(Entry::Asleep(_)) if forget => entries.remove(id),
                Some(Entry::Ready(_)) | Some(Entry::Loading { .. }) => return Err(PoolError::InUse(id.into())),
                Some(Entry::Asleep(_)) | None => None,
            }
        };
        let unloaded = removed.is_some();
        drop(removed); // the model is freed here, outside the lock
        if unloaded {
            self.inner.room.notify_waiters();
        }
        Ok(unloaded)
    }

    /// Unload idle models whose keep-alive has passed (they fall asleep when they can).
    /// Returns how many.
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
            let mut expired = Vec::new();
            for id in ids {
                let Some(e) = entries.remove(&id) else { continue };
                if let Some(asleep) = match &e {
                    Entry::Ready(s) => evicted_entry(s),
                    _ => None,
                } {
                    entries.insert(id, asleep);
                }
                expired.push(e);
            }
            expired
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
                    state: State::Ready,
                    bytes: s.bytes,
                    in_use: s.leases.load(Ordering::Acquire),
                    pinned: s.pin,
                    idle_s: now.duration_since(*s.last_used.lock().expect("poisoned")).as_secs_f64(),
                    keep_alive_s: s.keep_alive.lock().expect("poisoned").map(|d| d.as_secs_f64()),
                    resident_s: now.duration_since(s.loaded_at).as_secs_f64(),
                    load_s: s.load_time.as_secs_f64(),
                },
                Entry::Asleep(a) => ResidentInfo {
                    id: id.clone(),
                    state: State::Asleep,
                    bytes: a.bytes,
                    in_use: 0,
                    pinned: self.inner.policies.get(id).is_some_and(|p| p.pin),
                    idle_s: now.duration_since(a.last_used).as_secs_f64(),
                    keep_alive_s: None,
                    resident_s: now.duration_since(a.since).as_secs_f64(),
                    load_s: 0.0,
                },
                Entry::Loading { estimate, .. } => ResidentInfo {
                    id: id.clone(),
                    state: State::Loading,
                    bytes: *estimate,
                    in_use: 0,
                    pinned: false,
                    idle_s: 0.0,
                    keep_alive_s: None,
                    resident_s: 0.0,
                    load_s: 0.0,
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

enum Step<K> {
    Wait(watch::Receiver<Option<Result<(), LoadError>>>),
    Load(watch::Sender<Option<Result<(), LoadError>>>, Option<K>),
    NoRoom { need: u64, free: u64 },
}

fn used_bytes<M: Resident>(entries: &HashMap<String, Entry<M>>) -> u64 {
    entries.values().map(Entry::bytes).sum()
}

/// Make `need` bytes fit: idle, unpinned models fall asleep (or go, if they leave nothing)
/// and asleep ones go, least recently used first; models that just fell asleep go too if that
/// is still not enough. On failure nothing is evicted and the bytes that could have been
/// freed are returned.
fn make_room<M: Resident>(
    entries: &mut HashMap<String, Entry<M>>,
    need: u64,
    budget: u64,
    evicted: &mut Vec<Arc<Slot<M>>>,
) -> Result<(), u64> {
    let used = used_bytes(entries);
    if used + need <= budget {
        return Ok(());
    }
    let mut victims: Vec<(String, Instant, u64)> = entries
        .iter()
        .filter_map(|(id, e)| match e {
            Entry::Ready(s) if !s.pin && s.leases.load(Ordering::Acquire) == 0 => {
                Some((id.clone(), *s.last_used.lock().expect("poisoned"), s.bytes))
            }
            Entry::Asleep(a) => Some((id.clone(), a.last_used, a.bytes)),
            _ => None,
        })
        .collect();
    victims.sort_by_key(|x| x.1);
    let evictable: u64 = victims.iter().map(|x| x.2).sum();
    let free_now = budget.saturating_sub(used);
    if free_now + evictable < need {
        return Err(free_now + evictable);
    }
    let mut free = free_now;
    for (id, _, _) in &victims {
        if free >= need {
            return Ok(());
        }
        match entries.remove(id) {
            Some(Entry::Ready(s)) => {
                free += s.bytes;
                if let Some(asleep) = evicted_entry(&s) {
                    free -= asleep.bytes();
                    entries.insert(id.clone(), asleep);
                }
                evicted.push(s);
            }
            Some(Entry::Asleep(a)) => free += a.bytes,
            Some(other) => {
                entries.insert(id.clone(), other);
            }
            None => {}
        }
    }
    for (id, _, _) in &victims {
        if free >= need {
            break;
        }
        if let Some(Entry::Asleep(_)) = entries.get(id) {
            free += entries.remove(id).map_or(0, |e| e.bytes());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
