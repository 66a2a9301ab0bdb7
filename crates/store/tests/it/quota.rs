//! Per-key quotas counted in the store: requests per minute are exact even when two store
//! handles (two server processes) admit concurrently; tokens per minute and USD per day refuse
//! once what finished requests used reaches the limit; Retry-After is the time to the window's
//! end; keys without limits write nothing. SQLite, and Postgres with STORE_TEST_POSTGRES_URL.

use crate::common;
use store::{Admission, KeyLimits, KeyScope, Store, Usage};

/// 2027-01-15 01:00:00 UTC: a minute and a day boundary.
const T0: i64 = 1_800_000_000 - 1_800_000_000 % 86_400 + 3_600;

fn refused(limit: &'static str, retry_after_s: u64) -> Admission {
    Admission::Refused { limit, retry_after_s }
}

async fn key(s: &Store, name: &str) -> String {
    s.create_key(name, &[KeyScope::Inference], "interactive")
        .await
        .unwrap()
        .key
        .id
}

async fn quotas(s: &Store, other: &Store, tag: &str) {
    let none = KeyLimits::default();
    let free = key(s, &format!("free{tag}")).await;
    assert_eq!(s.quota_admit(&free, &none, T0).await.unwrap(), Admission::Admitted);
    assert_eq!(
        s.quota_usage(&free, T0).await.unwrap(),
        Usage::default(),
        "no limits: nothing counted"
    );

    // Requests per minute, shared by two handles on one store.
    let k = key(s, &format!("rpm{tag}")).await;
    let rpm = KeyLimits { rpm: Some(3), ..none };
    for (i, st) in [s, other, s].into_iter().enumerate() {
        assert_eq!(
            st.quota_admit(&k, &rpm, T0 + 10 + i as i64).await.unwrap(),
            Admission::Admitted,
            "request {i}"
        );
    }
    assert_eq!(
        other.quota_admit(&k, &rpm, T0 + 15).await.unwrap(),
        refused("requests per minute", 45)
    );
    assert_eq!(
        s.quota_admit(&k, &rpm, T0 + 59).await.unwrap(),
        refused("requests per minute", 1)
    );
    assert_eq!(
        s.quota_usage(&k, T0 + 30).await.unwrap().requests_minute,
        3,
        "refused requests are not counted"
    );
    assert_eq!(
        other.quota_admit(&k, &rpm, T0 + 60).await.unwrap(),
        Admission::Admitted,
        "the next minute is a new window"
    );

    // Exact under concurrency: 24 requests at once over both handles, 5 admitted.
    let k = key(s, &format!("race{tag}")).await;
    let rpm = KeyLimits { rpm: Some(5), ..none };
    let tasks: Vec<_> = (0..24)
        .map(|i| {
            let (st, k) = (if i % 2 == 0 { s.clone() } else { other.clone() }, k.clone());
            tokio::spawn(async move { st.quota_admit(&k, &rpm, T0 + 120).await.unwrap() == Admission::Admitted })
        })
        .collect();
    let mut admitted = 0;
    for t in tasks {
        admitted += t.await.unwrap() as i32;
    }
    assert_eq!(admitted, 5);

    // Tokens per minute: admitted while under the limit at the start; charged when done.
    let k = key(s, &format!("tpm{tag}")).await;
    let tpm = KeyLimits { tpm: Some(100), ..none };
    assert_eq!(s.quota_admit(&k, &tpm, T0 + 180).await.unwrap(), Admission::Admitted);
    s.quota_charge(&k, 60, 0.0, T0 + 181).await.unwrap();
    assert_eq!(
        other.quota_admit(&k, &tpm, T0 + 182).await.unwrap(),
        Admission::Admitted,
        "60 < 100"
    );
    other.quota_charge(&k, 50, 0.0, T0 + 183).await.unwrap();
    assert_eq!(
        s.quota_usage(&k, T0 + 184).await.unwrap().tokens_minute,
        110,
        "overshoot: what was in flight"
    );
    assert_eq!(
        s.quota_admit(&k, &tpm, T0 + 200).await.unwrap(),
        refused("tokens per minute", 40)
    );
    assert_eq!(s.quota_admit(&k, &tpm, T0 + 240).await.unwrap(), Admission::Admitted);

    // USD per day.
    let k = key(s, &format!("usd{tag}")).await;
    let usd = KeyLimits {
        daily_usd: Some(0.01),
        ..none
    };
    s.quota_charge(&k, 5, 0.004, T0).await.unwrap();
    assert_eq!(other.quota_admit(&k, &usd, T0 + 1).await.unwrap(), Admission::Admitted);
    other.quota_charge(&k, 5, 0.007, T0 + 2).await.unwrap();
    let left = 86_400 - 3_600 - 3;
    assert_eq!(
        s.quota_admit(&k, &usd, T0 + 3).await.unwrap(),
        refused("USD per day", left)
    );
    assert_eq!(
        s.quota_admit(&k, &usd, T0 + 23 * 3600).await.unwrap(),
        Admission::Admitted,
        "a new UTC day"
    );

    // Ended windows are pruned; the current ones stay.
    assert!(s.quota_prune(T0 + 3 * 86_400).await.unwrap() >= 4);
    assert_eq!(s.quota_usage(&k, T0 + 3).await.unwrap(), Usage::default());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn quotas_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let at = dir.path().join("rs.db");
    let s = Store::open(at.to_str().unwrap()).await.unwrap();
    let other = Store::open(at.to_str().unwrap()).await.unwrap();
    quotas(&s, &other, "").await;
    assert!(s.set_key_limits("nobody", KeyLimits::default()).await.is_err());
    assert!(
        s.set_key_limits(
            "free",
            KeyLimits {
                rpm: Some(0),
                ..Default::default()
            }
        )
        .await
        .is_err(),
        "0 is not a limit"
    );
    assert!(s
        .set_key_limits(
            "free",
            KeyLimits {
                daily_usd: Some(f64::NAN),
                ..Default::default()
            }
        )
        .await
        .is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn quotas_on_postgres_when_configured() {
    let Some((url, _turn)) = common::postgres_public("quota").await else {
        return;
    };
    let s = Store::open(&url).await.unwrap();
    let other = Store::open(&url).await.unwrap();
    quotas(&s, &other, &common::unique_tag()).await;
}
