//! API keys: required when open local use is off; scopes; revocation takes effect live.

use serde_json::json;
use std::time::Duration;

#[test]
fn keys_scopes_and_revocation() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("rs.db").display().to_string();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let (base, store, user, admin) = rt.block_on(async {
        let store = store::Store::open(&db).await.unwrap();
        let user = store.create_key("app", &[store::KeyScope::Inference], "batch").await.unwrap();
        let admin = store.create_key("ops", &[store::KeyScope::Inference, store::KeyScope::Admin], "interactive").await.unwrap();
        let cfg = server::ServerConfig::from_toml("open_local = false\n[[model]]\nid = \"smollm2-135m\"\nctx = 512\nmax_sequences = 2\n").unwrap();
        let keys = server::keys::StoreKeys::start(store.clone(), Duration::from_millis(200)).await.unwrap();
        let state = server::state(cfg, supply::Cache::from_env(), Some(keys)).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(server::serve_on(listener, state, std::future::pending()));
        (base, store, user.secret, admin.secret)
    });
    let c = reqwest::blocking::Client::builder().timeout(Duration::from_secs(120)).build().unwrap();
    let chat = |key: Option<&str>| {
        let mut r = c.post(format!("{base}/v1/chat/completions")).json(&json!({"model": "smollm2-135m", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}));
        if let Some(k) = key {
            r = r.bearer_auth(k);
        }
        r.send().unwrap()
    };
    let r = chat(None);
    assert_eq!(r.status(), 401);
    let body: serde_json::Value = r.json().unwrap();
    assert_eq!(body["error"]["type"], "authentication_error");
    assert_eq!(chat(Some("rsk-not-a-key")).status(), 401);
    assert_eq!(chat(Some(&user)).status(), 200);
    // Scopes: the inference key cannot use admin endpoints; the admin key can.
    assert_eq!(c.get(format!("{base}/admin/models")).bearer_auth(&user).send().unwrap().status(), 403);
    assert_eq!(c.get(format!("{base}/admin/models")).bearer_auth(&admin).send().unwrap().status(), 200);
    // Health stays open for probes.
    assert_eq!(c.get(format!("{base}/health")).send().unwrap().status(), 200);
    // Revocation takes effect without a restart.
    rt.block_on(store.revoke_key("app")).unwrap();
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(chat(Some(&user)).status(), 401);
    assert_eq!(chat(Some(&admin)).status(), 200);
}

#[test]
fn open_local_is_refused_beyond_loopback() {
    let cfg = server::ServerConfig::from_toml("bind = \"0.0.0.0:8080\"\n[[model]]\nid = \"smollm2-135m\"\n").unwrap();
    let err = server::state(cfg, supply::Cache::from_env(), None).err().expect("refused");
    assert!(err.to_string().contains("not loopback"), "{err}");
}
