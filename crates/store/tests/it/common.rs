//! What the store's test files share: the opt-in Postgres scratch database.

use tokio::sync::{Mutex, MutexGuard};

/// The scratch database named by `STORE_TEST_POSTGRES_URL` (`scripts/test.sh` starts the
/// machine's PostgreSQL and sets it). When it is not set: `None` and the `what` test is skipped
/// (printed and counted), or, under CI, the test fails (`testkit::skip_or_fail`).
pub fn postgres_url(what: &str) -> Option<String> {
    let url = std::env::var("STORE_TEST_POSTGRES_URL").ok().filter(|u| !u.is_empty());
    testkit::require(url, || format!("STORE_TEST_POSTGRES_URL not set: Postgres {what} test"))
}

/// The tests on the scratch database's public schema share its tables, and the audit test
/// drops and recreates its own there: they take turns, as when each test file was its own
/// process. Hold the guard for the whole test (an async mutex: it is held across awaits).
static PUBLIC_SCHEMA: Mutex<()> = Mutex::const_new(());

/// [`postgres_url`], for a test on the public schema: the URL and its turn.
pub async fn postgres_public(what: &str) -> Option<(String, MutexGuard<'static, ()>)> {
    let url = postgres_url(what)?;
    Some((url, PUBLIC_SCHEMA.lock().await))
}

/// A suffix that keeps this run's rows apart from earlier runs' in a shared database.
pub fn unique_tag() -> String {
    format!(
        "-{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}

/// A new, empty schema in the scratch database and a URL whose connections use only it
/// (`search_path`): a fresh Postgres store, as a new deployment sees it.
pub async fn fresh_postgres_schema(url: &str, name: &str) -> String {
    let schema = format!("rs_{name}_{}", unique_tag().trim_start_matches('-'));
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(url).await.unwrap();
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    format!(
        "{url}{}options[search_path]={schema}",
        if url.contains('?') { '&' } else { '?' }
    )
}

/// Drop a schema made by [`fresh_postgres_schema`] (`at` is the URL it returned).
pub async fn drop_postgres_schema(base: &str, at: &str) {
    let schema = at.rsplit("search_path]=").next().unwrap();
    let pool = sqlx::AnyPool::connect(base).await.unwrap();
    sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
}
