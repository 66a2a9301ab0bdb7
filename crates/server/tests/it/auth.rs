//! API keys: required when open local use is off; scopes; revocation takes effect live; the
//! auth path of `server::access` (Host, Origin, JSON bodies, the admin token) and per-key
//! ceilings (priority, keep_alive).

use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

#[test]
fn keys_scopes_and_revocation() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("rs.db").display().to_string();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (base, store, user, admin) = rt.block_on(async {
        let store = store::Store::open(&db).await.unwrap();
        let user = store.create_key("app", &[store::KeyScope::Inference], "batch").await.unwrap();
        let admin = store.create_key("ops", &[store::KeyScope::Inference, store::KeyScope::Admin], "interactive").await.unwrap();
        let cfg = server::ServerConfig::from_toml("open_local = false\nmax_keep_alive_s = 120\n[[model]]\nid = \"smollm2-135m\"\nctx = 512\nmax_sequences = 2\n").unwrap();
        let keys = server::keys::StoreKeys::start(store.clone(), Duration::from_millis(200)).await.unwrap();
        let state = server::state(cfg, supply::Cache::from_env(), Some(keys)).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(server::serve_on(listener, state, std::future::pending()));
        (base, store, user.secret, admin.secret)
    });
    let c = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap();
    let chat = |key: Option<&str>| {
        let mut r = c
            .post(format!("{base}/v1/chat/completions"))
            .json(&json!({"model": "smollm2-135m", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}));
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
    assert_eq!(
        c.get(format!("{base}/admin/models"))
            .bearer_auth(&user)
            .send()
            .unwrap()
            .status(),
        403
    );
    assert_eq!(
        c.get(format!("{base}/admin/models"))
            .bearer_auth(&admin)
            .send()
            .unwrap()
            .status(),
        200
    );
    // Health stays open for probes.
    assert_eq!(c.get(format!("{base}/health")).send().unwrap().status(), 200);
    // A key's priority is a ceiling: the batch key cannot ask for interactive, by body or header.
    let with = |key: &str, extra: serde_json::Value| {
        let mut body =
            json!({"model": "smollm2-135m", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        c.post(format!("{base}/v1/chat/completions"))
            .bearer_auth(key)
            .json(&body)
    };
    let r = with(&user, json!({"priority": "interactive"})).send().unwrap();
    assert_eq!(r.status(), 403);
    let body: serde_json::Value = r.json().unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("ceiling is `batch`"),
        "{body}"
    );
    assert_eq!(
        with(&user, json!({}))
            .header("x-rightsize-priority", "interactive")
            .send()
            .unwrap()
            .status(),
        403
    );
    assert_eq!(with(&user, json!({"priority": "batch"})).send().unwrap().status(), 200);
    assert_eq!(
        with(&admin, json!({"priority": "batch"})).send().unwrap().status(),
        200,
        "interactive keys may lower their class"
    );
    // keep_alive holds for every caller: admin only, capped at max_keep_alive_s (120 here).
    let r = with(&user, json!({"keep_alive": "10m"})).send().unwrap();
    assert_eq!(r.status(), 403);
    let body: serde_json::Value = r.json().unwrap();
    assert_eq!(body["error"]["param"], "keep_alive", "{body}");
    for forever in [json!(-1), json!("99h")] {
        assert_eq!(
            with(&admin, json!({"keep_alive": forever})).send().unwrap().status(),
            200
        );
        let ps: serde_json::Value = c
            .get(format!("{base}/admin/models"))
            .bearer_auth(&admin)
            .send()
            .unwrap()
            .json()
            .unwrap();
        let m = ps["models"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["id"] == "smollm2-135m")
            .cloned()
            .unwrap();
        assert_eq!(m["keep_alive_s"], 120.0, "{ps}");
    }
    // Revocation takes effect without a restart.
    rt.block_on(store.revoke_key("app")).unwrap();
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(chat(Some(&user)).status(), 401);
    assert_eq!(chat(Some(&admin)).status(), 200);
}

#[test]
fn open_local_is_refused_beyond_loopback() {
    let cfg = server::ServerConfig::from_toml("bind = \"0.0.0.0:8080\"\n[[model]]\nid = \"smollm2-135m\"\n").unwrap();
    let err = server::state(cfg, supply::Cache::from_env(), None)
        .err()
        .expect("refused");
    assert!(err.to_string().contains("not loopback"), "{err}");
    // Beyond loopback the Host check needs the names clients use.
    let cache = tempfile::tempdir().unwrap();
    let keyed = "open_local = false\nbind = \"0.0.0.0:8080\"\n[[model]]\nid = \"smollm2-135m\"\n";
    let err = server::state(
        server::ServerConfig::from_toml(keyed).unwrap(),
        supply::Cache::new(cache.path()),
        Some(Arc::new(NoKeys)),
    )
    .err()
    .expect("refused");
    assert!(err.to_string().contains("allowed_hosts"), "{err}");
    let cfg = server::ServerConfig::from_toml(&format!("allowed_hosts = [\"gpu-box.lan\"]\n{keyed}")).unwrap();
    assert!(server::state(cfg, supply::Cache::new(cache.path()), Some(Arc::new(NoKeys))).is_ok());
}

struct NoKeys;

impl server::KeyCheck for NoKeys {
    fn check(&self, _: &str) -> server::KeyLookup {
        server::KeyLookup::Unknown
    }
}

const SMOL: &str = "[[model]]\nid = \"smollm2-135m\"\nctx = 512\nmax_sequences = 2\n";

/// A server on a free loopback port, on its own runtime (keys from the SQLite file `db`, when
/// given); stopped cleanly by `stop`.
struct Live {
    base: String,
    port: u16,
    token: String,
    store: Option<store::Store>,
    rt: tokio::runtime::Runtime,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), server::ServeError>>>,
}

impl Live {
    fn start(toml: &str, cache: &std::path::Path, db: Option<&std::path::Path>) -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let cfg = server::ServerConfig::from_toml(toml).unwrap();
        let cache = supply::Cache::new(cache);
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let (base, port, token, store, task) = rt.block_on(async {
            let store = match db {
                Some(db) => Some(store::Store::open(&db.display().to_string()).await.unwrap()),
                None => None,
            };
            let keys = match &store {
                Some(s) => Some(
                    server::keys::StoreKeys::start(s.clone(), Duration::from_millis(200))
                        .await
                        .unwrap() as Arc<dyn server::KeyCheck>,
                ),
                None => None,
            };
            let state = server::state(cfg, cache, keys).unwrap();
            let token = state.admin_token().to_owned();
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let task = tokio::spawn(server::serve_on(listener, state, async {
                let _ = rx.await;
            }));
            (format!("http://{addr}"), addr.port(), token, store, task)
        });
        let me = Self {
            base,
            port,
            token,
            store,
            rt,
            stop: Some(tx),
            task: Some(task),
        };
        // Serving (and so the token file written) once /health answers.
        let t0 = std::time::Instant::now();
        while me.get("/health", None).status() != 200 {
            assert!(t0.elapsed() < Duration::from_secs(10), "server not up");
            std::thread::sleep(Duration::from_millis(20));
        }
        me
    }

    /// Shut down gracefully and wait until `serve_on` has returned.
    fn stop(&mut self) {
        if let (Some(tx), Some(task)) = (self.stop.take(), self.task.take()) {
            let _ = tx.send(());
            self.rt.block_on(task).unwrap().unwrap();
        }
    }

    fn get(&self, path: &str, key: Option<&str>) -> reqwest::blocking::Response {
        let mut r = client().get(format!("{}{path}", self.base));
        if let Some(k) = key {
            r = r.bearer_auth(k);
        }
        r.send().unwrap()
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        self.stop();
    }
}

fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

/// The README's client (`OpenAI(api_key="local")`, like every official client) always sends a
/// bearer: in open local mode an unknown one is an anonymous caller with the `inference` scope.
/// A revoked key, and a key whose guardrail policy does not parse, are refused all the same.
#[test]
fn open_local_unknown_bearer_is_anonymous_but_revoked_and_broken_keys_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("rs.db");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (app, ops, broken) = rt.block_on(async {
        let store = store::Store::open(&db.display().to_string()).await.unwrap();
        let app = store
            .create_key("app", &[store::KeyScope::Inference], "interactive")
            .await
            .unwrap();
        let ops = store
            .create_key(
                "ops",
                &[store::KeyScope::Inference, store::KeyScope::Admin],
                "interactive",
            )
            .await
            .unwrap();
        let broken = store
            .create_key(
                "broken",
                &[store::KeyScope::Inference, store::KeyScope::Admin],
                "interactive",
            )
            .await
            .unwrap();
        // Written past `rightsize keys guard`'s validation (an older version, a hand edit).
        store
            .set_key_guard("broken", Some("{\"pii\": \"shred\""))
            .await
            .unwrap();
        store.pool().close().await;
        (app.secret, ops.secret, broken)
    });
    let s = Live::start(SMOL, &dir.path().join("cache"), Some(&db));
    let store = s.store.clone().unwrap();
    assert_eq!(s.get("/v1/models", None).status(), 200);
    assert_eq!(
        s.get("/v1/models", Some("local")).status(),
        200,
        "an unknown bearer is anonymous in open local mode"
    );
    assert_eq!(s.get("/v1/models", Some(&app)).status(), 200);
    // Anonymous callers have the inference scope only; admin keys and the admin token pass.
    for key in [None, Some("local")] {
        let r = s.get("/admin/models", key);
        assert_eq!(r.status(), 403);
        let body: serde_json::Value = r.json().unwrap();
        assert!(body["error"]["message"].as_str().unwrap().contains("admin"), "{body}");
    }
    assert_eq!(s.get("/admin/models", Some(&app)).status(), 403);
    assert_eq!(s.get("/admin/models", Some(&ops)).status(), 200);
    assert_eq!(s.get("/admin/models", Some(&s.token)).status(), 200);
    // Fail closed: not served without its guardrails, not demoted to anonymous either.
    for path in ["/v1/models", "/admin/models"] {
        let r = s.get(path, Some(&broken.secret));
        assert_eq!(r.status(), 403, "{path}");
        let body: serde_json::Value = r.json().unwrap();
        assert_eq!(body["error"]["code"], "key_refused", "{body}");
        assert!(
            body["error"]["message"].as_str().unwrap().contains(&broken.key.id),
            "{body}"
        );
    }
    let r = client()
        .post(format!("{}/v1/chat/completions", s.base))
        .bearer_auth(&broken.secret)
        .json(&json!({"model": "smollm2-135m", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 403);
    // Revoked: 401, even though an unknown bearer would pass.
    s.rt.block_on(store.revoke_key("app")).unwrap();
    std::thread::sleep(Duration::from_millis(600));
    let r = s.get("/v1/models", Some(&app));
    assert_eq!(r.status(), 401);
    let body: serde_json::Value = r.json().unwrap();
    assert_eq!(body["error"]["type"], "authentication_error", "{body}");
    assert_eq!(s.get("/v1/models", Some("local")).status(), 200);
    // A fixed policy is served again at the next refresh.
    s.rt.block_on(store.set_key_guard("broken", Some("{\"pii\": \"redact\"}")))
        .unwrap();
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(s.get("/v1/models", Some(&broken.secret)).status(), 200);
}

/// A web page must not reach a local server: not by DNS rebinding (a foreign Host), not by a
/// cross-site request (an Origin), not with a body a form or `text/plain` fetch can send.
#[test]
fn web_pages_cannot_reach_a_local_server() {
    let dir = tempfile::tempdir().unwrap();
    let s = Live::start(
        &format!("allowed_hosts = [\"gpu-box.lan\"]\nallowed_origins = [\"http://localhost:3000\"]\n{SMOL}"),
        dir.path(),
        None,
    );
    let c = client();
    let port = s.port;
    for path in [
        "/health",
        "/ready",
        "/metrics",
        "/v1/models",
        "/admin/models",
        "/no/such/route",
    ] {
        for host in [
            "evil.example".to_owned(),
            format!("evil.example:{port}"),
            format!("localhost.evil.example:{port}"),
            format!("10.0.0.5:{port}"),
        ] {
            let r = c
                .get(format!("{}{path}", s.base))
                .header("host", &host)
                .bearer_auth(&s.token)
                .send()
                .unwrap();
            assert_eq!(r.status(), 403, "{path} {host}");
            let body: serde_json::Value = r.json().unwrap();
            assert_eq!(body["error"]["code"], "host_not_allowed", "{body}");
        }
    }
    for host in [
        format!("localhost:{port}"),
        format!("127.0.0.1:{port}"),
        format!("127.1.2.3:{port}"),
        format!("[::1]:{port}"),
        format!("gpu-box.lan:{port}"),
        "localhost".to_owned(),
    ] {
        assert_eq!(
            c.get(format!("{}/health", s.base))
                .header("host", &host)
                .send()
                .unwrap()
                .status(),
            200,
            "{host}"
        );
    }
    // A cross-site POST, even one that carried the admin token, and with a "simple" body.
    let r = c
        .post(format!("{}/admin/models/smollm2-135m/unload", s.base))
        .header("origin", "http://evil.example")
        .header("content-type", "text/plain")
        .bearer_auth(&s.token)
        .body("x")
        .send()
        .unwrap();
    assert_eq!(r.status(), 403);
    let body: serde_json::Value = r.json().unwrap();
    assert_eq!(body["error"]["code"], "origin_not_allowed", "{body}");
    for origin in ["http://evil.example", "null", "http://localhost:3001"] {
        assert_eq!(
            c.get(format!("{}/health", s.base))
                .header("origin", origin)
                .send()
                .unwrap()
                .status(),
            403,
            "{origin}"
        );
    }
    // Bodies must be JSON (415), whatever the route.
    let chat = r#"{"model": "smollm2-135m", "messages": [{"role": "user", "content": "Hi"}]}"#;
    for ct in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
        None,
    ] {
        let mut r = c.post(format!("{}/v1/chat/completions", s.base)).body(chat);
        if let Some(ct) = ct {
            r = r.header("content-type", ct);
        }
        let r = r.send().unwrap();
        assert_eq!(r.status(), 415, "{ct:?}");
        let body: serde_json::Value = r.json().unwrap();
        assert_eq!(body["error"]["type"], "invalid_request_error", "{body}");
    }
    let r = c
        .post(format!("{}/admin/models/smollm2-135m/unload", s.base))
        .header("content-type", "text/plain")
        .bearer_auth(&s.token)
        .body("x")
        .send()
        .unwrap();
    assert_eq!(r.status(), 415);
    // A POST without a body (the CLI's load/unload) is fine.
    let r = c
        .post(format!("{}/admin/models/smollm2-135m/unload", s.base))
        .bearer_auth(&s.token)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    // An allowed origin is served, with CORS headers, and its preflight answered.
    let r = c
        .get(format!("{}/v1/models", s.base))
        .header("origin", "http://localhost:3000")
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["access-control-allow-origin"], "http://localhost:3000");
    let r = c
        .request(reqwest::Method::OPTIONS, format!("{}/v1/chat/completions", s.base))
        .header("origin", "http://localhost:3000")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "authorization, content-type")
        .send()
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(r.headers()["access-control-allow-origin"], "http://localhost:3000");
    assert_eq!(
        r.headers()["access-control-allow-headers"],
        "authorization, content-type"
    );
    let r = c
        .request(reqwest::Method::OPTIONS, format!("{}/v1/chat/completions", s.base))
        .header("origin", "http://evil.example")
        .header("access-control-request-method", "POST")
        .send()
        .unwrap();
    assert_eq!(r.status(), 403);
}

/// The per-start admin token: a 0600 file per port in the cache, accepted only by the server
/// that wrote it, removed when that server stops.
#[test]
fn admin_token_file_is_private_per_start_and_removed_at_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = Live::start(SMOL, dir.path(), None);
    let b = Live::start(SMOL, dir.path(), None);
    let path_a = server::access::token_path(dir.path(), a.port);
    let path_b = server::access::token_path(dir.path(), b.port);
    assert_eq!(std::fs::read_to_string(&path_a).unwrap(), a.token);
    assert_eq!(std::fs::read_to_string(&path_b).unwrap(), b.token);
    assert!(
        a.token.len() == 64 && a.token.bytes().all(|c| c.is_ascii_hexdigit()),
        "{}",
        a.token
    );
    assert_ne!(a.token, b.token);
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&path_a).unwrap().permissions().mode() & 0o777, 0o600);
    }
    assert_eq!(a.get("/admin/models", Some(&a.token)).status(), 200);
    assert_eq!(
        b.get("/admin/models", Some(&a.token)).status(),
        403,
        "another server's token is just an unknown bearer"
    );
    a.stop();
    assert!(!path_a.exists(), "removed at clean shutdown");
    assert!(path_b.exists());
}
