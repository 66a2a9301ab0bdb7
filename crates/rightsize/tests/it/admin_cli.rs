//! `rightsize ps | load | unload [--forget]` against a running `rightsize serve` (the real
//! binary, SmolLM2-135M): a loaded model is ready, unloaded it is asleep (a few MiB of
//! parsed vocabulary, weights and KV freed), forgotten it is gone; unknown models fail clearly.
//! No key is given: the CLI sends the admin token the server wrote to its cache.

use crate::common::{rightsize, BIN};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Serve(Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `rightsize ps`'s row for `model`, split into columns (None when it is not listed).
fn ps_row(url: &str, model: &str) -> Option<Vec<String>> {
    let (ok, out, err) = rightsize(&["ps", "--url", url]);
    assert!(ok, "{err}");
    assert!(out.lines().nth(1).is_some_and(|h| h.contains("STATE")), "{out}");
    out.lines()
        .find(|l| l.split_whitespace().next() == Some(model))
        .map(|l| l.split_whitespace().map(str::to_owned).collect())
}

#[test]
fn ps_load_unload_and_forget() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("rightsize.toml");
    let db = dir.path().join("rs.db");
    std::fs::write(
        &config,
        format!(
            "store = \"{}\"\n[[model]]\nid = \"smollm2-135m\"\nmax_sequences = 2\nctx = 512\n",
            db.display()
        ),
    )
    .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let log = std::fs::File::create(dir.path().join("serve.log")).unwrap();
    let _serve = Serve(
        Command::new(BIN)
            .args([
                "serve",
                "--config",
                config.to_str().unwrap(),
                "--bind",
                &format!("127.0.0.1:{port}"),
            ])
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let t0 = Instant::now();
    while !rightsize(&["ps", "--url", &url]).0 {
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "server not up: {}",
            std::fs::read_to_string(dir.path().join("serve.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(ps_row(&url, "smollm2-135m"), None, "models load on first use");
    // No key was given: `ps` sent the admin token the server wrote for its port (0600); a
    // keyless caller gets inference only.
    let token_path = server::access::token_path(supply::Cache::from_env().root(), port);
    let token = std::fs::read_to_string(&token_path).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&token_path).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    let c = reqwest::blocking::Client::new();
    assert_eq!(c.get(format!("{url}/admin/models")).send().unwrap().status(), 403);
    assert_eq!(
        c.get(format!("{url}/admin/models"))
            .bearer_auth(token.trim())
            .send()
            .unwrap()
            .status(),
        200
    );
    assert_eq!(c.get(format!("{url}/v1/models")).send().unwrap().status(), 200);

    let (ok, out, err) = rightsize(&["load", "smollm2-135m", "--url", &url]);
    assert!(ok && out.contains("smollm2-135m loaded"), "{out}{err}");
    let row = ps_row(&url, "smollm2-135m").unwrap();
    assert_eq!(row.last().unwrap(), "ready", "{row:?}");
    let ready_mib: f64 = row[1].parse().unwrap();

    let (ok, out, _) = rightsize(&["unload", "smollm2-135m", "--url", &url]);
    assert!(ok && out.contains("smollm2-135m unloaded"), "{out}");
    let row = ps_row(&url, "smollm2-135m").unwrap();
    assert_eq!(row.last().unwrap(), "asleep", "{row:?}");
    let asleep_mib: f64 = row[1].parse().unwrap();
    assert!(
        asleep_mib > 0.0 && asleep_mib * 4.0 < ready_mib,
        "asleep {asleep_mib} MiB vs ready {ready_mib} MiB"
    );

    let (ok, out, _) = rightsize(&["unload", "smollm2-135m", "--forget", "--url", &url]);
    assert!(ok && out.contains("smollm2-135m unloaded"), "{out}");
    assert_eq!(ps_row(&url, "smollm2-135m"), None);
    let (ok, out, _) = rightsize(&["unload", "smollm2-135m", "--url", &url]);
    assert!(ok && out.contains("was not resident"), "{out}");

    let (ok, _, err) = rightsize(&["unload", "nope", "--url", &url]);
    assert!(!ok && err.contains("404") && err.contains("nope"), "{err}");

    // A wrong key is not replaced by the token.
    let (ok, _, err) = rightsize(&["ps", "--url", &url, "--api-key", "rsk-wrong"]);
    assert!(!ok && err.contains("403"), "{err}");
    // A clean stop (Ctrl-C) removes the token file.
    let pid = _serve.0.id().to_string();
    assert!(Command::new("kill").args(["-INT", &pid]).status().unwrap().success());
    let t0 = Instant::now();
    while token_path.exists() {
        assert!(t0.elapsed() < Duration::from_secs(30), "token file left after shutdown");
        std::thread::sleep(Duration::from_millis(100));
    }
}
