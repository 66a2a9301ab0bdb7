//! Per-key quotas on the real server: requests/min refuse the next request with 429 +
//! Retry-After in OpenAI's error shape; two server instances on one SQLite store share the
//! count; tokens/min and USD/day refuse once finished requests used them up (with the audit
//! off: quotas do not depend on it); keys without limits are not counted.

use serde_json::{json, Value};
use std::time::Duration;

const MODELS: &str = "open_local = false\n[[model]]\nid = \"smollm2-135m\"\nctx = 512\nmax_sequences = 2\n";

/// A server over the store at `db` (keys refreshed every 200 ms, quotas counted in it, audit
/// per `toml`), on its own runtime thread; returns its base URL.
fn start(db: &str, toml: &str) -> String {
    let (db, toml) = (db.to_owned(), toml.to_owned());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let store = store::Store::open(&db).await.unwrap();
            let cfg = server::ServerConfig::from_toml(&toml).unwrap();
            let keys = server::keys::StoreKeys::start(store.clone(), Duration::from_millis(200))
                .await
                .unwrap();
            let mut state = server::state(cfg, supply::Cache::from_env(), Some(keys)).unwrap();
            state.set_audit(store.clone());
            state.set_quotas(store);
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(format!("http://{}", listener.local_addr().unwrap())).unwrap();
            server::serve_on(listener, state, std::future::pending()).await.unwrap();
        });
    });
    rx.recv_timeout(Duration::from_secs(30)).expect("server bound")
}

fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap()
}

/// A fresh minute with at least `need_s` seconds left, so a per-minute test stays in one window.
fn fresh_minute(need_s: u64) {
    let into = store::now_ms() as u64 / 1000 % 60;
    if 60 - into < need_s {
        std::thread::sleep(Duration::from_secs(60 - into) + Duration::from_millis(100));
    }
}

fn key(db: &str, name: &str, limits: store::KeyLimits) -> (String, String) {
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let s = store::Store::open(db).await.unwrap();
        let k = s
            .create_key(name, &[store::KeyScope::Inference], "interactive")
            .await
            .unwrap();
        if !limits.is_empty() {
            s.set_key_limits(&k.key.id, limits).await.unwrap();
        }
        (k.key.id, k.secret)
    })
}

fn models(c: &reqwest::blocking::Client, base: &str, secret: &str) -> reqwest::blocking::Response {
    c.get(format!("{base}/v1/models")).bearer_auth(secret).send().unwrap()
}

/// The 429 a quota gives: OpenAI's error shape, Retry-After within the window.
fn assert_quota_429(r: reqwest::blocking::Response, limit: &str, max_retry_s: u64) {
    assert_eq!(r.status(), 429);
    let retry: u64 = r
        .headers()
        .get("retry-after")
        .expect("Retry-After")
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=max_retry_s).contains(&retry), "Retry-After {retry}");
    let body: Value = r.json().unwrap();
    assert_eq!(body["error"]["type"], "rate_limit_error");
    assert_eq!(body["error"]["code"], "quota_exceeded");
    assert!(body["error"]["message"].as_str().unwrap().contains(limit), "{body}");
}

#[test]
fn requests_per_minute_are_shared_by_two_servers_on_one_store() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("rs.db").display().to_string();
    let (_, one) = key(
        &db,
        "one",
        store::KeyLimits {
            rpm: Some(2),
            ..Default::default()
        },
    );
    let (_, shared) = key(
        &db,
        "shared",
        store::KeyLimits {
            rpm: Some(3),
            ..Default::default()
        },
    );
    let (free_id, free) = key(&db, "free", store::KeyLimits::default());
    let (a, b) = (start(&db, MODELS), start(&db, MODELS));
    let c = client();
    fresh_minute(20);
    assert_eq!(models(&c, &a, &one).status(), 200);
    assert_eq!(models(&c, &a, &one).status(), 200);
    assert_quota_429(models(&c, &a, &one), "requests per minute", 60);
    // One count across both servers: 3 admitted in all, the 4th refused wherever it goes.
    for base in [&a, &b, &a] {
        assert_eq!(models(&c, base, &shared).status(), 200);
    }
    assert_quota_429(models(&c, &b, &shared), "requests per minute", 60);
    assert_quota_429(models(&c, &a, &shared), "requests per minute", 60);
    // No limits: never refused, nothing counted.
    for _ in 0..6 {
        assert_eq!(models(&c, &b, &free).status(), 200);
    }
    let used = tokio::runtime::Runtime::new().unwrap().block_on(async {
        store::Store::open(&db)
            .await
            .unwrap()
            .quota_usage(&free_id, store::now_ms() / 1000)
            .await
            .unwrap()
    });
    assert_eq!(used, store::Usage::default());
}

#[test]
fn tokens_per_minute_and_usd_per_day_refuse_once_used_with_the_audit_off() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("rs.db").display().to_string();
    let (tpm_id, tpm) = key(
        &db,
        "tpm",
        store::KeyLimits {
            tpm: Some(20),
            ..Default::default()
        },
    );
    let (_, usd) = key(
        &db,
        "usd",
        store::KeyLimits {
            daily_usd: Some(1e-12),
            ..Default::default()
        },
    );
    let base = start(&db, &format!("audit = {{ enabled = false }}\n{MODELS}"));
    let c = client();
    let chat = |secret: &str| {
        c.post(format!("{base}/v1/chat/completions"))
            .bearer_auth(secret)
            .json(
                &json!({"model": "smollm2-135m", "messages": [{"role": "user", "content": "Say hi"}], "max_tokens": 4}),
            )
            .send()
            .unwrap()
    };
    fresh_minute(40);
    // Under the limit at its start: admitted, and its tokens (prompt + completion > 20) counted.
    let r = chat(&tpm);
    assert_eq!(r.status(), 200);
    let u: Value = r.json().unwrap();
    let used = u["usage"]["total_tokens"].as_i64().unwrap();
    assert!(used > 20, "{u}");
    let counted = tokio::runtime::Runtime::new().unwrap().block_on(async {
        store::Store::open(&db)
            .await
            .unwrap()
            .quota_usage(&tpm_id, store::now_ms() / 1000)
            .await
            .unwrap()
    });
    assert_eq!(counted.tokens_minute, used);
    assert_quota_429(chat(&tpm), "tokens per minute", 60);

    assert_eq!(chat(&usd).status(), 200);
    assert_quota_429(chat(&usd), "USD per day", 86_400);
    // The audit was off: nothing was recorded there, yet the quotas counted.
    let records = tokio::runtime::Runtime::new().unwrap().block_on(async {
        store::Store::open(&db)
            .await
            .unwrap()
            .audit_verify()
            .await
            .unwrap()
            .records
    });
    assert_eq!(records, 0);
}
