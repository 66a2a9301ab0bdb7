//! What the README promises, against the real binary as `scripts/main.sh` runs it:
//! `rightsize serve` with the default config (no `--config`: SmolLM2-135M, Qwen2.5-0.5B/1.5B,
//! MiniLM) on a free port, a temporary cache (its own store, key files and heads; the models
//! linked from the real cache) and a copy of `tasks/` without the BBC data files.
//!
//! - The README's Python client snippet (the first ```python block under "## Serving"), taken
//!   from README.md at test time and run **unmodified** except for the port in its `base_url`,
//!   with the official `openai` package: it gets a real chat answer and two embeddings.
//! - The server starts although a task's data files are missing: `bbc-topic` is listed as
//!   unavailable with the reason (`GET /v1/tasks`, the start-up log) and a run of it is a 503;
//!   the other tasks are served.

use crate::common::BIN;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const WORKSPACE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

/// The first ```python block after the `## Serving` heading of README.md.
fn readme_client_snippet() -> String {
    let readme = std::fs::read_to_string(Path::new(WORKSPACE).join("README.md")).unwrap();
    let serving = readme
        .find("\n## Serving")
        .expect("README.md has a `## Serving` section");
    let rest = &readme[serving..];
    let start = rest.find("```python\n").expect("a ```python block under `## Serving`") + "```python\n".len();
    let len = rest[start..].find("```").expect("the python block is closed");
    rest[start..start + len].to_owned()
}

/// Copy `src` to `dst` recursively, leaving out the files `skip` says no to.
fn copy_tree(src: &Path, dst: &Path, skip: &dyn Fn(&Path) -> bool) {
    std::fs::create_dir_all(dst).unwrap();
    for e in std::fs::read_dir(src).unwrap().flatten() {
        let p = e.path();
        if skip(&p) {
            continue;
        }
        if p.is_dir() {
            copy_tree(&p, &dst.join(e.file_name()), skip);
        } else {
            std::fs::copy(&p, dst.join(e.file_name())).unwrap();
        }
    }
}

struct Served {
    child: Child,
    base: String,
    port: u16,
    log: PathBuf,
    /// The server's working directory (its `./tasks` is the copy without the BBC data).
    work: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `rightsize serve` of its own for each test (stopped when the test ends, also on failure).
fn start() -> Served {
    let dir = tempfile::tempdir().unwrap();
    // A cache of its own (store, key files, trained heads) whose models are the real ones.
    let cache = dir.path().join("cache");
    std::fs::create_dir_all(cache.join("models")).unwrap();
    for id in ["smollm2-135m", "qwen2.5-0.5b", "qwen2.5-1.5b", "minilm-l6"] {
        let real = testkit::cache_root().join("models").join(id);
        assert!(
            real.is_dir(),
            "{} is missing: run `rightsize pull --default` (the README's set-up does)",
            real.display()
        );
        std::os::unix::fs::symlink(&real, cache.join("models").join(id)).unwrap();
    }
    // The shipped tasks, as a fresh clone has them before the BBC set is built.
    let work = dir.path().join("work");
    copy_tree(&Path::new(WORKSPACE).join("tasks"), &work.join("tasks"), &|p: &Path| {
        p.file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("bbc-topic.") && !n.to_string_lossy().ends_with(".toml"))
    });
    assert!(work.join("tasks/bbc-topic.toml").is_file() && !work.join("tasks/data/bbc-topic.examples.jsonl").exists());

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let log = dir.path().join("serve.log");
    let mut child = Command::new(BIN)
        .args(["serve", "--bind", &format!("127.0.0.1:{port}")])
        .current_dir(&work)
        .env("RIGHTSIZE_CACHE", &cache)
        .env("RIGHTSIZE_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("spawn rightsize serve");
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::blocking::Client::new();
    let t0 = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "rightsize serve exited ({status}): {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        // Ready once the pinned models (SmolLM2, MiniLM) are resident.
        if client
            .get(format!("{base}/ready"))
            .send()
            .is_ok_and(|r| r.status().is_success())
        {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(300),
            "not ready after 300 s: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    Served {
        child,
        base,
        port,
        log,
        work,
        _dir: dir,
    }
}

#[test]
fn serve_lists_a_task_whose_data_is_missing_as_unavailable_and_serves_the_others() {
    let s = start();
    let client = reqwest::blocking::Client::new();
    let list: Value = client
        .get(format!("{}/v1/tasks", s.base))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let tasks = list["data"].as_array().unwrap_or_else(|| panic!("{list}"));
    let find = |name: &str| {
        tasks
            .iter()
            .find(|t| t["name"] == name)
            .unwrap_or_else(|| panic!("{name} not listed: {list}"))
    };
    for name in ["contact-extract", "short-answer", "ticket-triage"] {
        assert_eq!(find(name)["available"], true, "{list}");
    }
    let bbc = find("bbc-topic");
    assert_eq!(bbc["available"], false, "{list}");
    let reason = bbc["unavailable"].as_str().unwrap_or_default();
    assert!(
        reason.contains("bbc-topic.") && reason.contains("not found"),
        "the reason names the missing file: {list}"
    );

    // A run of it says why; the start-up log said so too.
    let r = client
        .post(format!("{}/v1/tasks/bbc-topic", s.base))
        .json(&serde_json::json!({"input": {"article": "x"}}))
        .send()
        .unwrap();
    let status = r.status().as_u16();
    let body: Value = r.json().unwrap();
    assert_eq!(status, 503, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("unavailable") && m.contains("not found")),
        "{body}"
    );
    let log = std::fs::read_to_string(&s.log).unwrap();
    assert!(log.contains("bbc-topic unavailable"), "{log}");

    // `rightsize tasks list` in the same directory says so too, and still lists the others.
    let out = Command::new(BIN)
        .args(["tasks", "list"])
        .current_dir(&s.work)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("bbc-topic") && l.contains("unavailable:") && l.contains("not found")),
        "{stdout}"
    );
    assert!(
        ["contact-extract", "short-answer", "ticket-triage"]
            .iter()
            .all(|t| stdout.lines().any(|l| l.starts_with(t) && !l.contains("unavailable"))),
        "{stdout}"
    );
}

#[test]
fn readme_python_client_snippet_runs_unmodified_against_the_default_mesh() {
    let snippet = readme_client_snippet();
    assert_eq!(
        snippet.matches("http://127.0.0.1:8080/v1").count(),
        1,
        "the snippet's base_url is the default address:\n{snippet}"
    );
    let s = start();
    // The only change: the port this test's server listens on.
    let code = snippet.replace("127.0.0.1:8080", &format!("127.0.0.1:{}", s.port));
    // Run as a user pastes it into `python3`: statement by statement, an expression's value
    // echoed (the REPL's display hook), here also recorded as JSON for the checks below.
    const RUNNER: &str = r#"
import ast, json, sys
shown = []
def hook(v):
    if v is None:
        return
    shown.append(v)
    r = repr(v)
    print(r if len(r) <= 600 else r[:600] + "...")
sys.displayhook = hook
src = sys.stdin.read()
env = {"__name__": "__main__"}
for node in ast.parse(src).body:
    exec(compile(ast.Interactive(body=[node]), "<README.md>", "single"), env)
out = []
for v in shown:
    if hasattr(v, "choices"):
        out.append({"chat": v.choices[0].message.content, "model": v.model})
    elif hasattr(v, "data"):
        out.append({"embeddings": [len(d.embedding) for d in v.data]})
print("README-RESULTS " + json.dumps(out))
"#;
    let py = testkit::python();
    let mut child = Command::new(&py)
        .args(["-c", RUNNER])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e}", py.display()));
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), code.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    println!("{stdout}{stderr}");
    assert!(out.status.success(), "the README snippet failed with {} (is the `openai` package installed? scripts/setup.sh dev installs it into target/py):\n{code}\n{stderr}", py.display());
    let results: Value = stdout
        .lines()
        .find_map(|l| l.strip_prefix("README-RESULTS "))
        .map(|j| serde_json::from_str(j).unwrap())
        .unwrap_or_else(|| panic!("no results: {stdout}"));
    let chat = results
        .as_array()
        .unwrap()
        .iter()
        .find_map(|r| r["chat"].as_str())
        .unwrap_or_else(|| panic!("the snippet shows no chat completion: {results}"));
    assert!(
        chat.trim().chars().filter(|c| c.is_alphabetic()).count() >= 2,
        "a sensible answer to \"Hi\": {chat:?}"
    );
    assert!(
        results.as_array().unwrap().iter().any(|r| r["model"] == "qwen2.5-0.5b"),
        "{results}"
    );
    let dims = results
        .as_array()
        .unwrap()
        .iter()
        .find_map(|r| r["embeddings"].as_array().cloned())
        .unwrap_or_else(|| panic!("the snippet shows no embeddings: {results}"));
    assert_eq!(dims, [384, 384], "two MiniLM embeddings: {results}");
}
