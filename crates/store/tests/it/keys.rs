//! API keys: only a hash of the secret is stored; a revoked key stops verifying; the guard
//! policy column round-trips. The same checks on SQLite and, with STORE_TEST_POSTGRES_URL set,
//! on Postgres (the store several server instances share).

use crate::common;
use store::{hash_secret, KeyScope, Store, StoreError};

async fn round_trip(s: &Store, tag: &str) {
    let (app, ops) = (format!("app{tag}"), format!("ops{tag}"));
    let a = s.create_key(&app, &[KeyScope::Inference], "batch").await.unwrap();
    let o = s
        .create_key(&ops, &[KeyScope::Inference, KeyScope::Admin], "interactive")
        .await
        .unwrap();
    assert!(a.secret.starts_with(&a.key.prefix) && a.secret != o.secret);

    // The secret itself is nowhere in the table: only its hash and a short prefix.
    let stored = s.active_keys().await.unwrap();
    let (hash, _) = stored.iter().find(|(_, k)| k.id == a.key.id).unwrap();
    assert_eq!(hash, &hash_secret(&a.secret));
    assert!(stored
        .iter()
        .all(|(h, k)| !h.contains(&a.secret) && !k.prefix.contains(&a.secret)));

    let got = s.verify_key(&a.secret).await.unwrap().expect("its own secret verifies");
    assert_eq!(
        (got.name.as_str(), got.priority.as_str(), got.has(KeyScope::Admin)),
        (app.as_str(), "batch", false)
    );
    assert!(s.verify_key(&o.secret).await.unwrap().unwrap().has(KeyScope::Admin));
    assert!(
        s.verify_key(&format!("{}x", a.secret)).await.unwrap().is_none(),
        "a wrong secret does not"
    );

    s.set_key_guard(&app, Some(r#"{"pii":"redact"}"#)).await.unwrap();
    assert_eq!(
        s.verify_key(&a.secret).await.unwrap().unwrap().guard.as_deref(),
        Some(r#"{"pii":"redact"}"#)
    );
    s.set_key_guard(&a.key.id, None).await.unwrap();
    assert_eq!(s.verify_key(&a.secret).await.unwrap().unwrap().guard, None);

    let revoked = s.revoke_key(&app).await.unwrap();
    assert!(revoked.revoked_at.is_some());
    assert!(
        s.verify_key(&a.secret).await.unwrap().is_none(),
        "a revoked key stops verifying"
    );
    assert!(s.revoke_key(&app).await.is_err(), "revoking twice names no key");
    assert!(
        s.set_key_guard(&app, None).await.is_err(),
        "a revoked key takes no policy"
    );
    assert!(
        s.verify_key(&o.secret).await.unwrap().is_some(),
        "the other key is untouched"
    );
    let listed = s.list_keys().await.unwrap();
    assert!(
        listed.iter().any(|k| k.id == a.key.id && k.revoked_at.is_some()),
        "revoked keys stay listed"
    );

    // Names are unique among active keys, also when created at once; a revoked key's name is free.
    let dup = s.create_key(&ops, &[KeyScope::Inference], "batch").await;
    assert!(
        matches!(&dup, Err(StoreError::DuplicateName(n)) if *n == ops),
        "{dup:?}"
    );
    assert!(dup.unwrap_err().to_string().contains("already named"));
    let again = s.create_key(&app, &[KeyScope::Inference], "batch").await.unwrap();
    assert_eq!(
        s.revoke_key(&app).await.unwrap().id,
        again.key.id,
        "revoking by name picks the active key"
    );
    let race = format!("race{tag}");
    let tries: Vec<_> = (0..8)
        .map(|_| {
            let (s, race) = (s.clone(), race.clone());
            tokio::spawn(async move { s.create_key(&race, &[KeyScope::Inference], "batch").await })
        })
        .collect();
    let mut won = 0;
    for t in tries {
        match t.await.unwrap() {
            Ok(_) => won += 1,
            Err(StoreError::DuplicateName(_)) => {}
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(won, 1, "exactly one of concurrent creates with one name wins");
    assert_eq!(
        s.list_keys().await.unwrap().iter().filter(|k| k.name == race).count(),
        1
    );

    assert!(s.create_key("nothing", &[], "batch").await.is_err());
    assert!(s.create_key("slow", &[KeyScope::Inference], "urgent").await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn keys_round_trip_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path().join("rs.db").to_str().unwrap()).await.unwrap();
    round_trip(&s, "").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn keys_round_trip_on_postgres_when_configured() {
    let Some((url, _turn)) = common::postgres_public("keys").await else {
        return;
    };
    let s = Store::open(&url).await.unwrap();
    round_trip(&s, &common::unique_tag()).await;
}
