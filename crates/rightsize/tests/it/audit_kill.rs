//! Crash safety of the audit log: `rightsize serve` (the real binary, SmolLM2-135M) is killed
//! with SIGKILL in the middle of a bounded load. After a restart on the same store the chain
//! verifies and every request that was acknowledged (a complete 200 response) is in it.

use crate::common::{rightsize, BIN};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A `rightsize serve` child process; killed (and reaped) on drop, so a failing test leaves
/// no server behind.
struct Serve {
    child: Child,
    base: String,
    log: PathBuf,
}

impl Serve {
    fn start(config: &Path, dir: &Path, tag: &str) -> Serve {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = dir.join(format!("serve-{tag}.log"));
        let f = std::fs::File::create(&log).unwrap();
        let child = Command::new(BIN)
            .args([
                "serve",
                "--config",
                config.to_str().unwrap(),
                "--bind",
                &format!("127.0.0.1:{port}"),
            ])
            // No ./tasks here: the server serves the model only.
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(f.try_clone().unwrap())
            .stderr(f)
            .spawn()
            .expect("start rightsize serve");
        let mut s = Serve {
            child,
            base: format!("http://127.0.0.1:{port}"),
            log,
        };
        s.wait_ready(Duration::from_secs(180));
        s
    }

    fn wait_ready(&mut self, limit: Duration) {
        let c = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .unwrap();
        let t0 = Instant::now();
        loop {
            if let Ok(Some(st)) = self.child.try_wait() {
                panic!(
                    "the server exited ({st}): {}",
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
            if c.get(format!("{}/ready", self.base))
                .send()
                .is_ok_and(|r| r.status().is_success())
            {
                return;
            }
            assert!(
                t0.elapsed() < limit,
                "the server was not ready in {limit:?}: {}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// SIGKILL (what `Child::kill` sends on Unix): no shutdown code runs.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        self.kill();
    }
}

fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

/// A short chat request; `Some(x-request-id)` when it was acknowledged: a 200 with a whole body.
fn ask(c: &reqwest::blocking::Client, base: &str, content: &str) -> Result<Option<String>, reqwest::Error> {
    let r = c
        .post(format!("{base}/v1/chat/completions"))
        .json(&json!({"model": "smollm2-135m", "messages": [{"role": "user", "content": content}], "max_tokens": 8, "temperature": 0.7}))
        .send()?;
    let ok = r.status() == 200;
    let id = r
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body: Value = r.json()?;
    Ok(if ok && body["choices"][0]["message"]["content"].is_string() {
        id
    } else {
        None
    })
}

fn exported_ids(db: &str) -> Vec<String> {
    let (ok, out, err) = rightsize(&["audit", "export", "--store", db]);
    assert!(ok, "{err}");
    out.lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["request_id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect()
}

#[test]
fn sigkill_mid_load_loses_no_acknowledged_request_and_the_chain_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("audit.db");
    let at = db.to_str().unwrap().to_owned();
    let config = dir.path().join("rightsize.toml");
    std::fs::write(
        &config,
        format!("store = \"{at}\"\n[[model]]\nid = \"smollm2-135m\"\npin = true\nmax_sequences = 4\nctx = 512\n"),
    )
    .unwrap();

    let mut server = Serve::start(&config, dir.path(), "first");
    // The bounded load: 4 clients × up to 10 requests, each stopping at its first transport error.
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let clients: Vec<_> = (0..4)
        .map(|t| {
            let (acked, base) = (acked.clone(), server.base.clone());
            std::thread::spawn(move || {
                let c = client();
                let mut sent = 0;
                for i in 0..10 {
                    sent += 1;
                    match ask(&c, &base, &format!("Count to three, client {t} request {i}.")) {
                        Ok(Some(id)) => acked.lock().unwrap().push(id),
                        Ok(None) => {}
                        Err(_) => break,
                    }
                }
                sent
            })
        })
        .collect();
    // Kill once some requests are acknowledged and others are still in flight.
    let t0 = Instant::now();
    while acked.lock().unwrap().len() < 8 {
        assert!(
            t0.elapsed() < Duration::from_secs(240),
            "the load made no progress: {}",
            std::fs::read_to_string(&server.log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    server.kill();
    let sent: usize = clients.into_iter().map(|h| h.join().unwrap()).sum();
    let acked = acked.lock().unwrap().clone();
    println!("{} of {sent} requests acknowledged before SIGKILL", acked.len());
    assert!(acked.len() >= 8);
    assert!(acked.len() < 40, "the kill must interrupt the load");

    // Restart on the same store: the chain verifies and holds every acknowledged request.
    let server = Serve::start(&config, dir.path(), "second");
    let (ok, out, err) = rightsize(&["audit", "verify", "--store", &at]);
    assert!(ok, "the chain must verify after SIGKILL: {out}{err}");
    let ids = exported_ids(&at);
    for id in &acked {
        assert!(
            ids.contains(id),
            "acknowledged request {id} is missing from the audit log"
        );
    }
    assert!(ids.len() >= acked.len());
    // And the restarted server continues the same chain.
    let id = ask(&client(), &server.base, "One more.")
        .unwrap()
        .expect("acknowledged");
    let after = exported_ids(&at);
    assert_eq!(after.len(), ids.len() + 1);
    assert_eq!(after.last(), Some(&id));
    let (ok, out, err) = rightsize(&["audit", "verify", "--store", &at]);
    assert!(ok, "{out}{err}");
    assert!(out.contains(&format!("OK: {} records", after.len())), "{out}");
}
