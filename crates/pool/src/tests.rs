use super::*;
use std::sync::atomic::AtomicU32;

/// A model of `bytes`; ids starting with `s` can sleep, leaving a tenth of their bytes.
struct Fake {
    id: String,
    bytes: u64,
}
impl Resident for Fake {
    /// The id it was loaded as, to check a wake gets its own model's part.
    type Asleep = String;
    fn bytes(&self) -> u64 {
        self.bytes
    }
    fn asleep(&self) -> Option<(String, u64)> {
        self.id.starts_with('s').then(|| (self.id.clone(), self.bytes / 10))
    }
}

#[derive(Default)]
struct FakeLoader {
    loads: AtomicU32,
    /// Ids of loads that started from an asleep part.
    woken: Mutex<Vec<String>>,
    fail: Mutex<Vec<String>>,
}

impl Loader<Fake> for FakeLoader {
    fn estimate(&self, id: &str, _: Option<&String>) -> Result<u64, LoadError> {
        Ok(size(id))
    }
    fn load(&self, id: &str, asleep: Option<String>) -> Result<Fake, LoadError> {
        self.loads.fetch_add(1, Ordering::SeqCst);
        if let Some(kept) = asleep {
            assert_eq!(kept, id, "a wake gets its own model's part");
            self.woken.lock().unwrap().push(kept);
        }
        std::thread::sleep(Duration::from_millis(50));
        if self.fail.lock().unwrap().iter().any(|f| f == id) {
            return Err(LoadError::new(LoadErrorKind::Failed, "corrupt file"));
        }
        Ok(Fake {
            id: id.to_owned(),
            bytes: size(id),
        })
    }
    fn prepare(&self, id: &str) -> Result<Option<(String, u64)>, LoadError> {
        Ok(id.starts_with('s').then(|| (id.to_owned(), size(id) / 10)))
    }
}

/// Ids carry their size: "a40" is 40 bytes.
fn size(id: &str) -> u64 {
    id.trim_start_matches(|c: char| c.is_alphabetic()).parse().unwrap()
}

fn pool(budget: u64, ids: &[(&str, Policy)], wait: Duration) -> (Pool<Fake>, Arc<FakeLoader>) {
    let loader = Arc::new(FakeLoader::default());
    let policies = ids.iter().map(|(id, p)| (id.to_string(), p.clone())).collect();
    (Pool::new(budget, loader.clone(), policies, wait), loader)
}

fn plain(ids: &[&'static str]) -> Vec<(&'static str, Policy)> {
    ids.iter().map(|id| (*id, Policy::default())).collect()
}

fn resident(p: &Pool<Fake>) -> Vec<String> {
    p.list()
        .into_iter()
        .filter(|r| r.state == State::Ready)
        .map(|r| r.id)
        .collect()
}

fn asleep(p: &Pool<Fake>) -> Vec<(String, u64)> {
    p.list()
        .into_iter()
        .filter(|r| r.state == State::Asleep)
        .map(|r| (r.id, r.bytes))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_share_one_load() {
    let (p, loader) = pool(100, &plain(&["a40"]), Duration::from_secs(1));
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let p = p.clone();
            tokio::spawn(async move { p.acquire("a40", None).await.map(|l| l.bytes()) })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap(), 40);
    }
    assert_eq!(loader.loads.load(Ordering::SeqCst), 1);
    assert_eq!(p.used(), 40);
}

#[tokio::test]
async fn evicts_least_recently_used_idle_model() {
    let (p, _) = pool(100, &plain(&["a40", "b40", "c40"]), Duration::from_millis(100));
    drop(p.acquire("a40", None).await.unwrap());
    tokio::time::sleep(Duration::from_millis(5)).await;
    drop(p.acquire("b40", None).await.unwrap());
    tokio::time::sleep(Duration::from_millis(5)).await;
    drop(p.acquire("a40", None).await.unwrap()); // a is now the most recent
    drop(p.acquire("c40", None).await.unwrap());
    assert_eq!(resident(&p), vec!["a40", "c40"]);
    assert_eq!(p.counters().evictions.load(Ordering::Relaxed), 1);
    assert!(p.used() <= p.budget());
}

#[tokio::test]
async fn never_evicts_a_model_in_use_or_pinned() {
    let policies = vec![
        ("a40", Policy::default()),
        (
            "p40",
            Policy {
                pin: true,
                keep_alive: None,
            },
        ),
        ("c40", Policy::default()),
    ];
    let (p, _) = pool(100, &policies, Duration::from_millis(100));
    drop(p.acquire("p40", None).await.unwrap());
    let held = p.acquire("a40", None).await.unwrap();
    let err = p.acquire("c40", None).await.err().unwrap();
    assert!(
        matches!(
            err,
            PoolError::NoRoom {
                need: 40,
                free: 20,
                budget: 100,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(resident(&p), vec!["a40", "p40"]);
    // Once the lease ends, a waiting load gets the room.
    let p2 = p.clone();
    let waiter = tokio::spawn(async move { p2.acquire("c40", None).await.map(|_| ()) });
    tokio::time::sleep(Duration::from_millis(20)).await;
    drop(held);
    waiter.await.unwrap().unwrap();
    assert_eq!(resident(&p), vec!["c40", "p40"]);
}

#[tokio::test]
async fn a_model_bigger_than_the_budget_is_refused() {
    let (p, loader) = pool(100, &plain(&["z200"]), Duration::from_millis(10));
    assert!(matches!(p.acquire("z200", None).await, Err(PoolError::NoRoom { .. })));
    assert_eq!(loader.loads.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn keep_alive_expires_idle_models_only() {
    let policies = vec![
        (
            "a10",
            Policy {
                keep_alive: Some(Duration::from_millis(30)),
                pin: false,
            },
        ),
        (
            "b10",
            Policy {
                keep_alive: Some(Duration::from_millis(30)),
                pin: false,
            },
        ),
    ];
    let (p, _) = pool(100, &policies, Duration::from_millis(10));
    drop(p.acquire("a10", None).await.unwrap());
    let held = p.acquire("b10", None).await.unwrap();
    // A request may extend keep-alive for its model.
    drop(p.acquire("a10", Some(Duration::from_secs(60))).await.unwrap());
    tokio::time::sleep(Duration::from_millis(60)).await;
    assert_eq!(p.expire(), 0, "a10 was extended, b10 is in use");
    drop(held);
    tokio::time::sleep(Duration::from_millis(40)).await;
    assert_eq!(p.expire(), 1);
    assert_eq!(resident(&p), vec!["a10"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_failure_reaches_every_waiter_and_can_be_retried() {
    let (p, loader) = pool(100, &plain(&["a10"]), Duration::from_millis(10));
    loader.fail.lock().unwrap().push("a10".into());
    let (r1, r2) = tokio::join!(p.acquire("a10", None), p.acquire("a10", None));
    assert!(matches!(r1, Err(PoolError::LoadFailed { .. })));
    assert!(matches!(r2, Err(PoolError::LoadFailed { .. })));
    // Every waiter gets the loader's own error, kind and message.
    for r in [&r1, &r2] {
        let e = r.as_ref().err().unwrap();
        let kind = match e {
            PoolError::LoadFailed { reason, .. } => Some(reason.kind),
            _ => None,
        };
        assert_eq!(kind, Some(LoadErrorKind::Failed), "{e}");
        assert_eq!(e.to_string(), "loading `a10` failed: corrupt file");
    }
    assert_eq!(loader.loads.load(Ordering::SeqCst), 1);
    assert_eq!(p.used(), 0, "a failed load holds no budget");
    loader.fail.lock().unwrap().clear();
    assert!(p.acquire("a10", None).await.is_ok());
}

#[tokio::test]
async fn unknown_ids_and_admin_unload() {
    let (p, _) = pool(100, &plain(&["a10"]), Duration::from_millis(10));
    assert!(matches!(p.acquire("nope", None).await, Err(PoolError::Unknown(_))));
    let lease = p.acquire("a10", None).await.unwrap();
    assert!(p.unload("a10", false).is_err(), "in use");
    let in_use = p.unload("a10", false).unwrap_err();
    assert_eq!(in_use, PoolError::InUse("a10".into()));
    assert_eq!(
        in_use.to_string(),
        "loading `a10` failed: model is in use",
        "the admin API's text"
    );
    drop(lease);
    assert_eq!(p.unload("a10", false), Ok(true));
    assert_eq!(p.unload("a10", false), Ok(false));
    assert!(p.list().is_empty());
}

#[tokio::test]
async fn an_evicted_model_falls_asleep_counts_its_bytes_and_wakes_from_them() {
    let (p, loader) = pool(100, &plain(&["s60", "b50"]), Duration::from_millis(10));
    drop(p.acquire("s60", None).await.unwrap());
    // b50 needs room: s60 falls asleep, keeping 6 bytes, which still count.
    drop(p.acquire("b50", None).await.unwrap());
    assert_eq!(resident(&p), ["b50"]);
    assert_eq!(asleep(&p), [("s60".to_string(), 6)]);
    assert_eq!(p.used(), 56);
    assert_eq!(p.counters().evictions.load(Ordering::Relaxed), 1);
    assert!(loader.woken.lock().unwrap().is_empty());
    // Loading it again starts from what it left; b50 leaves nothing and goes.
    drop(p.acquire("s60", None).await.unwrap());
    assert_eq!(*loader.woken.lock().unwrap(), ["s60"]);
    assert_eq!(p.counters().wakes.load(Ordering::Relaxed), 1);
    assert_eq!(resident(&p), ["s60"]);
    assert!(asleep(&p).is_empty(), "awake again, its part is in its bytes");
    assert_eq!(p.used(), 60);
}

#[tokio::test]
async fn asleep_models_make_room_least_recently_used_first() {
    let (p, loader) = pool(100, &plain(&["s30", "s50", "a90", "a3"]), Duration::from_millis(10));
    drop(p.acquire("s30", None).await.unwrap());
    tokio::time::sleep(Duration::from_millis(5)).await;
    drop(p.acquire("s50", None).await.unwrap());
    // 90 bytes: both fall asleep, and their 3 + 5 bytes still fit beside it.
    drop(p.acquire("a90", None).await.unwrap());
    assert_eq!(resident(&p), ["a90"]);
    assert_eq!(asleep(&p), [("s30".to_string(), 3), ("s50".to_string(), 5)]);
    assert_eq!(p.used(), 98);
    // 3 more bytes: the least recently used asleep part (s30's) goes, nothing else.
    drop(p.acquire("a3", None).await.unwrap());
    assert_eq!(resident(&p), ["a3", "a90"]);
    assert_eq!(asleep(&p), [("s50".to_string(), 5)]);
    assert_eq!(p.used(), 98);
    // A fresh load after that gets no asleep part.
    p.unload("a90", false).unwrap();
    drop(p.acquire("s30", None).await.unwrap());
    assert!(loader.woken.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_model_that_just_fell_asleep_goes_too_when_its_part_is_in_the_way() {
    let (p, _) = pool(100, &plain(&["s50", "a98"]), Duration::from_millis(10));
    drop(p.acquire("s50", None).await.unwrap());
    drop(p.acquire("a98", None).await.unwrap());
    assert_eq!(resident(&p), ["a98"]);
    assert!(asleep(&p).is_empty(), "5 bytes asleep would not fit beside 98");
    assert_eq!(p.used(), 98);
}

#[tokio::test]
async fn a_load_that_finds_no_room_keeps_the_asleep_part() {
    let policies = vec![
        ("s50", Policy::default()),
        (
            "p60",
            Policy {
                pin: true,
                keep_alive: None,
            },
        ),
    ];
    let (p, loader) = pool(100, &policies, Duration::from_millis(20));
    drop(p.acquire("s50", None).await.unwrap());
    p.unload("s50", false).unwrap();
    assert_eq!(asleep(&p), [("s50".to_string(), 5)]);
    drop(p.acquire("p60", None).await.unwrap());
    // 60 pinned + 50 > 100: refused, and the asleep part is still there (and counted).
    assert!(matches!(p.acquire("s50", None).await, Err(PoolError::NoRoom { .. })));
    assert_eq!(asleep(&p), [("s50".to_string(), 5)]);
    assert_eq!(p.used(), 65);
    assert!(loader.woken.lock().unwrap().is_empty());
}

#[tokio::test]
async fn unload_puts_to_sleep_forget_drops_everything_and_keep_alive_puts_to_sleep() {
    let policies = vec![
        (
            "s40",
            Policy {
                keep_alive: Some(Duration::from_millis(20)),
                pin: false,
            },
        ),
        ("a10", Policy::default()),
    ];
    let (p, _) = pool(100, &policies, Duration::from_millis(10));
    drop(p.acquire("s40", None).await.unwrap());
    assert_eq!(p.unload("s40", false), Ok(true));
    assert_eq!(asleep(&p), [("s40".to_string(), 4)]);
    assert_eq!(
        p.unload("s40", false),
        Ok(false),
        "already asleep: nothing more to free without forget"
    );
    assert_eq!(p.unload("s40", true), Ok(true));
    assert!(p.list().is_empty());
    // A model that leaves nothing is simply gone.
    drop(p.acquire("a10", None).await.unwrap());
    assert_eq!(p.unload("a10", false), Ok(true));
    assert!(p.list().is_empty());
    // Keep-alive: asleep, not gone.
    drop(p.acquire("s40", None).await.unwrap());
    tokio::time::sleep(Duration::from_millis(30)).await;
    assert_eq!(p.expire(), 1);
    assert_eq!(asleep(&p), [("s40".to_string(), 4)]);
    assert_eq!(p.expire(), 0, "an asleep model does not expire again");
}

#[tokio::test]
async fn prepared_models_start_asleep_and_their_first_use_is_a_wake() {
    let policies = vec![
        ("s40", Policy::default()),
        ("a10", Policy::default()),
        (
            "p90",
            Policy {
                pin: true,
                keep_alive: None,
            },
        ),
        ("s200", Policy::default()),
    ];
    let (p, loader) = pool(100, &policies, Duration::from_millis(10));
    assert_eq!(p.prepare("s40").await, Ok(true));
    assert_eq!(asleep(&p), [("s40".to_string(), 4)]);
    assert_eq!(loader.loads.load(Ordering::SeqCst), 0, "prepared, not loaded");
    assert_eq!(p.prepare("s40").await, Ok(false), "already there");
    assert_eq!(p.prepare("a10").await, Ok(false), "leaves nothing asleep");
    assert!(matches!(p.prepare("nope").await, Err(PoolError::Unknown(_))));
    drop(p.acquire("s40", None).await.unwrap());
    assert_eq!(*loader.woken.lock().unwrap(), ["s40"]);
    // Nothing is evicted to prepare: with 90 pinned bytes, 20 asleep ones do not fit.
    p.unload("s40", true).unwrap();
    drop(p.acquire("p90", None).await.unwrap());
    assert_eq!(p.prepare("s200").await, Ok(false));
    assert_eq!(resident(&p), ["p90"]);
    assert!(asleep(&p).is_empty());
}
