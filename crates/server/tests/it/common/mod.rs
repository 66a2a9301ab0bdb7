//! Start a real server (real models from the cache) on a free loopback port.
#![allow(dead_code)]

pub mod fixtures;
pub mod logs;
pub mod proxy;

use std::time::Duration;

/// Every audit record in the SQLite store at `db`, as JSON lines, oldest first.
pub fn audit_lines(db: &std::path::Path) -> Vec<serde_json::Value> {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut out = Vec::new();
    rt.block_on(async {
        let s = store::Store::open(&db.display().to_string()).await.unwrap();
        s.audit_export(&mut out, None).await.unwrap();
    });
    String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

pub struct TestServer {
    pub base: String,
    /// This server's admin token (`AppState::admin_token`): what `/admin` needs.
    pub admin_token: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TestServer {
    pub fn start(toml: &str) -> Self {
        Self::start_with(toml, None)
    }

    /// A server that also serves the tasks in `tasks_dir`, recording runs in a SQLite file.
    pub fn start_with(toml: &str, tasks: Option<(std::path::PathBuf, std::path::PathBuf)>) -> Self {
        Self::start_full(toml, tasks, None)
    }

    /// As `start_with`, and with `audit_db` (a SQLite file): API keys from it (refreshed every
    /// 200 ms; requests without a key still pass while `open_local` is on) and the audit log in it.
    pub fn start_full(
        toml: &str,
        tasks: Option<(std::path::PathBuf, std::path::PathBuf)>,
        audit_db: Option<std::path::PathBuf>,
    ) -> Self {
        Self::start_logged(toml, tasks, audit_db, None)
    }

    /// As `start_full`, with what the server's threads log going to `capture` (see `logs`).
    pub fn start_logged(
        toml: &str,
        tasks: Option<(std::path::PathBuf, std::path::PathBuf)>,
        audit_db: Option<std::path::PathBuf>,
        capture: Option<logs::Logs>,
    ) -> Self {
        let cfg = server::ServerConfig::from_toml(toml).expect("test config");
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            logs::tag_thread(capture.clone());
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .on_thread_start(move || logs::tag_thread(capture.clone()))
                .build()
                .unwrap();
            rt.block_on(async move {
                let cache = supply::Cache::from_env();
                let audit = match audit_db {
                    Some(db) => Some(store::Store::open(&db.display().to_string()).await.unwrap()),
                    None => None,
                };
                let keys = match &audit {
                    Some(s) => Some(
                        server::keys::StoreKeys::start(s.clone(), Duration::from_millis(200))
                            .await
                            .unwrap() as std::sync::Arc<dyn server::KeyCheck>,
                    ),
                    None => None,
                };
                let mut builder = server::Builder::new(cfg, cache).keys(keys);
                if let Some(s) = audit {
                    builder = builder.audit(s);
                }
                if let Some((dir, db)) = tasks {
                    builder = builder.tasks(dir, Some(store::Store::open(&db.display().to_string()).await.unwrap()));
                }
                let state = builder.build().unwrap();
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                addr_tx
                    .send((listener.local_addr().unwrap(), state.admin_token().to_owned()))
                    .unwrap();
                server::serve_on(listener, state, async {
                    let _ = rx.await;
                })
                .await
                .unwrap();
            });
        });
        let (addr, admin_token) = addr_rx.recv_timeout(Duration::from_secs(30)).expect("server bound");
        let base = format!("http://{addr}");
        // Wait until pinned models are resident.
        let client = reqwest::blocking::Client::new();
        for _ in 0..600 {
            if client
                .get(format!("{base}/ready"))
                .send()
                .map(|r| r.status().is_success())
                .unwrap_or(false)
            {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Self {
            base,
            admin_token,
            stop: Some(tx),
            thread: Some(thread),
        }
    }

    pub fn client() -> reqwest::blocking::Client {
        reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(300))
            .build()
            .unwrap()
    }

    /// A client that sends this server's admin token (for `/admin` and `keep_alive`).
    pub fn admin_client(&self) -> reqwest::blocking::Client {
        let mut h = reqwest::header::HeaderMap::new();
        h.insert(
            reqwest::header::AUTHORIZATION,
            format!("Bearer {}", self.admin_token).parse().unwrap(),
        );
        reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(300))
            .default_headers(h)
            .build()
            .unwrap()
    }

    pub fn ps(&self) -> serde_json::Value {
        self.admin_client()
            .get(format!("{}/admin/models", self.base))
            .send()
            .unwrap()
            .json()
            .unwrap()
    }

    pub fn resident(&self) -> Vec<String> {
        self.ps()["models"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["state"] == "ready")
            .map(|m| m["id"].as_str().unwrap().to_owned())
            .collect()
    }

    pub fn chat(&self, model: &str, content: &str, extra: serde_json::Value) -> reqwest::blocking::Response {
        self.chat_with(&Self::client(), model, content, extra)
    }

    /// As `chat`, with `client` (e.g. `admin_client()`).
    pub fn chat_with(
        &self,
        client: &reqwest::blocking::Client,
        model: &str,
        content: &str,
        extra: serde_json::Value,
    ) -> reqwest::blocking::Response {
        let mut body = serde_json::json!({"model": model, "messages": [{"role": "user", "content": content}], "temperature": 0, "max_tokens": 8});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        client
            .post(format!("{}/v1/chat/completions", self.base))
            .json(&body)
            .send()
            .unwrap()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
