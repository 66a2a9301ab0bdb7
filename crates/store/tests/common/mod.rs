//! What the store's test files share: the opt-in Postgres scratch database.
#![allow(dead_code)]

/// The scratch database named by `STORE_TEST_POSTGRES_URL`; `None` (said on stderr) when it
/// is not set, and the `what` test is skipped.
pub fn postgres_url(what: &str) -> Option<String> {
    let url = std::env::var("STORE_TEST_POSTGRES_URL").ok();
    if url.is_none() {
        eprintln!("STORE_TEST_POSTGRES_URL not set: Postgres {what} test skipped");
    }
    url
}

/// A suffix that keeps this run's rows apart from earlier runs' in a shared database.
pub fn unique_tag() -> String {
    format!("-{:x}", std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos())
}
