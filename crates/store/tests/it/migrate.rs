//! Schema creation and upgrades: many processes opening one fresh store at once all succeed
//! (SQLite file; with STORE_TEST_POSTGRES_URL, a fresh Postgres schema); a store made by a
//! release before schema versions (tables, no `schema_version`, duplicate active key names)
//! opens and is upgraded; a store from a newer release is refused with a clear error.

use crate::common;
use store::{KeyScope, Store, StoreError};

/// `api_keys` as the first releases made it (no guard or quota columns).
const OLD_KEYS: &str = "CREATE TABLE api_keys (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, prefix TEXT NOT NULL, hash TEXT NOT NULL UNIQUE,
    scopes TEXT NOT NULL, priority TEXT NOT NULL, created_at BIGINT NOT NULL, revoked_at BIGINT)";

async fn open_many_at_once(url: &str, n: usize) {
    let opens: Vec<_> = (0..n)
        .map(|_| {
            tokio::spawn({
                let url = url.to_owned();
                async move { Store::open(&url).await.map(|s| s.pool().clone()) }
            })
        })
        .collect();
    for (i, o) in opens.into_iter().enumerate() {
        let pool = o.await.unwrap().unwrap_or_else(|e| panic!("opener {i} failed: {e}"));
        pool.close().await;
    }
    let s = Store::open(url).await.unwrap();
    let v: i64 = sqlx::query_scalar("SELECT version FROM schema_version WHERE id = 1")
        .fetch_one(s.pool())
        .await
        .unwrap();
    assert!(v >= 3, "every migration applied once: {v}");
    let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM schema_version")
        .fetch_one(s.pool())
        .await
        .unwrap();
    assert_eq!(rows, 1);
    let k = s.create_key("after", &[KeyScope::Inference], "batch").await.unwrap();
    assert!(s.verify_key(&k.secret).await.unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_openers_of_a_fresh_sqlite_store_all_succeed() {
    let dir = tempfile::tempdir().unwrap();
    open_many_at_once(dir.path().join("fresh.db").to_str().unwrap(), 12).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_openers_of_a_fresh_postgres_store_all_succeed_when_configured() {
    let Some(base) = common::postgres_url("concurrent open") else {
        return;
    };
    let url = common::fresh_postgres_schema(&base, "open").await;
    open_many_at_once(&url, 12).await;
    common::drop_postgres_schema(&base, &url).await;
}

async fn old_store_upgrades(url: &str) {
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(url).await.unwrap();
    sqlx::query(OLD_KEYS).execute(&pool).await.unwrap();
    for (id, name, hash, created, revoked) in [
        ("key_a", "dup", "h1", 10, None),
        ("key_b", "dup", "h2", 20, None),
        ("key_c", "dup", "h3", 5, Some(6)),
        ("key_d", "solo", "h4", 30, None),
    ] {
        sqlx::query("INSERT INTO api_keys (id, name, prefix, hash, scopes, priority, created_at, revoked_at) VALUES ($1, $2, 'rsk-', $3, 'inference', 'interactive', $4, $5)")
            .bind(id).bind(name).bind(hash).bind(created as i64).bind(revoked.map(|r: i64| r))
            .execute(&pool).await.unwrap();
    }
    pool.close().await;

    let s = Store::open(url).await.unwrap();
    let keys = s.list_keys().await.unwrap();
    let name = |id: &str| keys.iter().find(|k| k.id == id).unwrap().name.clone();
    // The oldest active key keeps the name; the newer one is renamed; revoked ones are left.
    assert_eq!(
        (name("key_a"), name("key_b"), name("key_c"), name("key_d")),
        ("dup".into(), "dup-key_b".into(), "dup".into(), "solo".into())
    );
    // Columns added by the upgrade work; the name is now unique among active keys.
    s.set_key_guard("solo", Some("{}")).await.unwrap();
    s.set_key_limits(
        "solo",
        store::KeyLimits {
            rpm: Some(5),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(
        s.list_keys()
            .await
            .unwrap()
            .iter()
            .find(|k| k.id == "key_d")
            .unwrap()
            .limits
            .rpm,
        Some(5)
    );
    assert!(
        matches!(s.create_key("dup", &[KeyScope::Inference], "batch").await, Err(StoreError::DuplicateName(n)) if n == "dup")
    );
    // Reopening changes nothing.
    drop(s);
    let s = Store::open(url).await.unwrap();
    assert_eq!(
        s.list_keys().await.unwrap(),
        keys.iter()
            .map(|k| if k.id == "key_d" {
                store::ApiKey {
                    guard: Some("{}".into()),
                    limits: store::KeyLimits {
                        rpm: Some(5),
                        ..Default::default()
                    },
                    ..k.clone()
                }
            } else {
                k.clone()
            })
            .collect::<Vec<_>>()
    );

    // A store a newer release has migrated further is refused, not half-understood.
    sqlx::query("UPDATE schema_version SET version = 999")
        .execute(s.pool())
        .await
        .unwrap();
    let err = Store::open(url).await.expect_err("a newer schema is refused");
    assert!(
        err.to_string().contains("version 999, newer than this release"),
        "{err}"
    );
}

#[tokio::test]
async fn a_store_from_before_schema_versions_opens_and_upgrades_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    old_store_upgrades(&format!("sqlite://{}?mode=rwc", dir.path().join("old.db").display())).await;
}

#[tokio::test]
async fn a_store_from_before_schema_versions_opens_and_upgrades_on_postgres_when_configured() {
    let Some(base) = common::postgres_url("upgrade") else {
        return;
    };
    let url = common::fresh_postgres_schema(&base, "old").await;
    old_store_upgrades(&url).await;
    common::drop_postgres_schema(&base, &url).await;
}
