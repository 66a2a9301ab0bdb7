//! The store from the `rightsize` binary: many processes started at once on a fresh store all
//! open it (SQLite file; with STORE_TEST_POSTGRES_URL, a fresh Postgres schema), duplicate key
//! names are refused clearly, and key quotas are set, changed and listed.

use crate::common::{merged as text, rightsize_merged as rightsize, BIN};
use std::process::Command;

/// `n` copies of `rightsize keys <args> --store <at>` started together; every one must exit 0.
fn all_at_once(at: &str, n: usize, args: &[&str]) {
    let children: Vec<_> = (0..n)
        .map(|_| {
            Command::new(BIN)
                .args(["keys"])
                .args(args)
                .args(["--store", at])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("spawn rightsize")
        })
        .collect();
    for (i, c) in children.into_iter().enumerate() {
        let o = c.wait_with_output().unwrap();
        assert!(o.status.success(), "process {i} of {n} failed: {}", text(&o));
    }
}

#[test]
fn processes_started_together_open_a_fresh_sqlite_store() {
    let dir = tempfile::tempdir().unwrap();
    let at = dir.path().join("fresh.db").display().to_string();
    all_at_once(&at, 8, &["list"]);
    let (ok, out) = rightsize(&["keys", "create", "--name", "one", "--store", &at]);
    assert!(ok, "{out}");
}

#[test]
fn processes_started_together_open_a_fresh_postgres_store_when_configured() {
    let base = std::env::var("STORE_TEST_POSTGRES_URL").ok().filter(|u| !u.is_empty());
    let Some(base) = testkit::require(base, || {
        "STORE_TEST_POSTGRES_URL not set: Postgres concurrent start test".into()
    }) else {
        return;
    };
    let schema = format!(
        "rs_cli_{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        sqlx::any::install_default_drivers();
        let pool = sqlx::AnyPool::connect(&base).await.unwrap();
        sqlx::query(&format!("CREATE SCHEMA {schema}"))
            .execute(&pool)
            .await
            .unwrap();
    });
    let at = format!(
        "{base}{}options[search_path]={schema}",
        if base.contains('?') { '&' } else { '?' }
    );
    all_at_once(&at, 8, &["list"]);
    let (ok, out) = rightsize(&["keys", "create", "--name", "one", "--store", &at]);
    assert!(ok, "{out}");
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let pool = sqlx::AnyPool::connect(&base).await.unwrap();
        sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
            .execute(&pool)
            .await
            .unwrap();
    });
}

#[test]
fn duplicate_names_are_refused_and_quotas_are_listed() {
    let dir = tempfile::tempdir().unwrap();
    let at = dir.path().join("rs.db").display().to_string();
    let (ok, out) = rightsize(&[
        "keys",
        "create",
        "--name",
        "app",
        "--rpm",
        "2",
        "--tpm",
        "1000",
        "--daily-usd",
        "0.5",
        "--store",
        &at,
    ]);
    assert!(ok, "{out}");
    let (ok, out) = rightsize(&["keys", "create", "--name", "app", "--store", &at]);
    assert!(!ok, "a second key named app is refused");
    assert!(out.contains("already named `app`"), "{out}");

    let row = |name: &str| {
        let (ok, out) = rightsize(&["keys", "list", "--store", &at]);
        assert!(ok && out.lines().next().is_some_and(|h| h.contains("LIMITS")), "{out}");
        out.lines()
            .find(|l| l.split_whitespace().nth(1) == Some(name))
            .map(str::to_owned)
            .unwrap_or_default()
    };
    assert!(row("app").contains("rpm=2,tpm=1000,usd/day=0.5"), "{}", row("app"));
    // Changed on an existing key: given flags replace, others stay, 0 removes one.
    let (ok, out) = rightsize(&[
        "keys",
        "limits",
        "app",
        "--rpm",
        "0",
        "--daily-usd",
        "2",
        "--store",
        &at,
    ]);
    assert!(ok, "{out}");
    assert!(
        row("app").contains("tpm=1000,usd/day=2") && !row("app").contains("rpm="),
        "{}",
        row("app")
    );
    let (ok, out) = rightsize(&["keys", "limits", "app", "--tpm=-5", "--store", &at]);
    assert!(!ok && out.contains("at least 1"), "{out}");
    let (ok, out) = rightsize(&["keys", "limits", "app", "--clear", "--store", &at]);
    assert!(ok, "{out}");
    assert!(row("app").contains(" - "), "{}", row("app"));
    // Once revoked, the name is free again.
    assert!(rightsize(&["keys", "revoke", "app", "--store", &at]).0);
    assert!(rightsize(&["keys", "create", "--name", "app", "--store", &at]).0);
}
