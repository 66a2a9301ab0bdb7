use super::*;
use std::sync::atomic::AtomicU32;

struct Fake(u64);
impl Resident for Fake {
    fn bytes(&self) -> u64 {
        self.0
    }
}

#[derive(Default)]
struct FakeLoader {
    loads: AtomicU32,
    fail: Mutex<Vec<String>>,
}

impl Loader<Fake> for FakeLoader {
    fn estimate(&self, id: &str) -> Result<u64, String> {
        Ok(size(id))
    }
    fn load(&self, id: &str) -> Result<Fake, String> {
        self.loads.fetch_add(1, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(50));
        if self.fail.lock().unwrap().iter().any(|f| f == id) {
            return Err("corrupt file".into());
        }
        Ok(Fake(size(id)))
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
    p.list().into_iter().map(|r| r.id).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_share_one_load() {
    let (p, loader) = pool(100, &plain(&["a40"]), Duration::from_secs(1));
    let tasks: Vec<_> = (0..8).map(|_| {
        let p = p.clone();
        tokio::spawn(async move { p.acquire("a40", None).await.map(|l| l.bytes()) })
    }).collect();
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
    let policies = vec![("a40", Policy::default()), ("p40", Policy { pin: true, keep_alive: None }), ("c40", Policy::default())];
    let (p, _) = pool(100, &policies, Duration::from_millis(100));
    drop(p.acquire("p40", None).await.unwrap());
    let held = p.acquire("a40", None).await.unwrap();
    let err = p.acquire("c40", None).await.err().unwrap();
    assert!(matches!(err, PoolError::NoRoom { need: 40, free: 20, budget: 100, .. }), "{err}");
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
    let policies = vec![("a10", Policy { keep_alive: Some(Duration::from_millis(30)), pin: false }), ("b10", Policy { keep_alive: Some(Duration::from_millis(30)), pin: false })];
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
    assert!(p.unload("a10").is_err(), "in use");
    drop(lease);
    assert_eq!(p.unload("a10"), Ok(true));
    assert_eq!(p.unload("a10"), Ok(false));
    assert!(p.list().is_empty());
}
