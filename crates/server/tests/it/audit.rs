//! The audit log through the HTTP API on real models: every request and task run leaves one
//! hash-chained record, in order, before its answer (key, model and its file hash, tokens,
//! tier path), holding only hashes of the text by default; `full` keeps the text; when the
//! record cannot be written the request fails (503) and a stream ends without `[DONE]`.

use crate::common::fixtures::SENTIMENT_PROMPT;
use crate::common::TestServer;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use store::{AuditLine, Store};

/// The keyed hash the server keeps under `content = "hashes"`: HMAC with the server key in the
/// cache (`<cache>/server.key`), which an auditor holding the key file can recompute.
fn content_hash(text: &str) -> String {
    let key = supply::Cache::from_env().root().join("server.key");
    let h = server::secret::ServerSecret::load_or_create(&key)
        .unwrap()
        .content_hash(text);
    assert_ne!(
        h,
        store::content_hash(text),
        "keyed, not a plain sha256 anyone could recompute from a guess"
    );
    h
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn export(db: &Path) -> Vec<AuditLine> {
    rt().block_on(async {
        let s = Store::open(&db.display().to_string()).await.unwrap();
        let mut out = Vec::new();
        s.audit_export(&mut out, None).await.unwrap();
        String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    })
}

fn verify(db: &Path) -> store::VerifyReport {
    rt().block_on(async {
        Store::open(&db.display().to_string())
            .await
            .unwrap()
            .audit_verify()
            .await
            .unwrap()
    })
}

/// The sha256 the cache's marker holds for a catalog model.
fn model_sha(id: &str) -> String {
    let path = supply::resolve_model(&supply::Cache::from_env(), id).unwrap();
    supply::read_marker(&path).expect("the cache has a verified marker")
}

fn request_id(r: &reqwest::blocking::Response) -> String {
    r.headers()["x-request-id"].to_str().unwrap().to_owned()
}

/// Run SQL on the SQLite file from outside the server (Python's sqlite3), as an operator could.
fn sql(db: &Path, stmt: &str) {
    let script = "import sqlite3, sys\nc = sqlite3.connect(sys.argv[1], timeout=30)\nc.executescript(sys.argv[2])\nc.commit()\nc.close()\n";
    let out = std::process::Command::new("python3")
        .args(["-c", script, db.to_str().unwrap(), stmt])
        .output()
        .expect("python3");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// The bytes of the database and its WAL.
fn db_bytes(db: &Path) -> Vec<u8> {
    let mut b = std::fs::read(db).unwrap();
    let mut wal = PathBuf::from(db).into_os_string();
    wal.push("-wal");
    b.extend(std::fs::read(wal).unwrap_or_default());
    b
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// The content of a streamed chat answer and whether it ended in `[DONE]`.
fn read_stream(r: reqwest::blocking::Response) -> (String, bool, Vec<Value>) {
    let text = r.text().unwrap();
    let (mut content, mut done, mut events) = (String::new(), false, Vec::new());
    for line in text.lines().filter_map(|l| l.strip_prefix("data: ")) {
        if line == "[DONE]" {
            done = true;
            continue;
        }
        let v: Value = serde_json::from_str(line).unwrap();
        if let Some(c) = v["choices"][0]["delta"]["content"].as_str() {
            content.push_str(c);
        }
        events.push(v);
    }
    (content, done, events)
}

const MODELS: &str = r#"
[[model]]
id = "smollm2-135m"
pin = true
ctx = 512
max_sequences = 2
[[model]]
id = "smol-b"
source = "smollm2-135m"
ctx = 512
max_sequences = 2
[[model]]
id = "minilm-l6"
pin = true
"#;

/// A two-tier label task whose first tier never reaches its threshold (so every run escalates).
fn task() -> String {
    format!("name = \"mood\"\nversion = 3\n{SENTIMENT_PROMPT}[[ladder]]\nkind = \"local\"\nmodel = \"smollm2-135m\"\nthreshold = 1.0\n[[ladder]]\nkind = \"local\"\nmodel = \"smol-b\"\n")
}

#[test]
fn every_request_and_task_run_leaves_one_chained_record_with_hashes_only() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("audit.db");
    std::fs::write(dir.path().join("mood.toml"), task()).unwrap();
    let key = rt().block_on(async {
        let s = Store::open(&db.display().to_string()).await.unwrap();
        s.create_key("app", &[store::KeyScope::Inference], "interactive")
            .await
            .unwrap()
    });
    let s = TestServer::start_full(MODELS, Some((dir.path().to_owned(), db.clone())), Some(db.clone()));
    let c = TestServer::client();
    let url = |p: &str| format!("{}{p}", s.base);
    let smol = model_sha("smollm2-135m");
    let mut ids = Vec::new();

    // 1. Chat with a key: the raw prompt must never reach the store.
    let secret = "PLUMTREE-7781 is my passport number";
    let r = c.post(url("/v1/chat/completions")).bearer_auth(&key.secret)
        .json(&json!({"model": "smollm2-135m", "messages": [{"role": "user", "content": secret}], "temperature": 0, "max_tokens": 8}))
        .send().unwrap();
    assert_eq!(r.status(), 200);
    ids.push(request_id(&r));
    let chat: Value = r.json().unwrap();
    // 2. Streamed chat without a key (open local use).
    let r = c.post(url("/v1/chat/completions"))
        .json(&json!({"model": "smollm2-135m", "messages": [{"role": "user", "content": "Name a colour. QUINCE-4412"}], "temperature": 0, "max_tokens": 8, "stream": true, "stream_options": {"include_usage": true}}))
        .send().unwrap();
    assert_eq!(r.status(), 200);
    ids.push(request_id(&r));
    let (streamed, done, events) = read_stream(r);
    assert!(done, "{events:?}");
    let stream_usage = events.iter().find(|e| e["usage"].is_object()).unwrap()["usage"].clone();
    // 3. Legacy completion.
    let prompt = "The capital of France is MEDLAR-9034";
    let r = c
        .post(url("/v1/completions"))
        .json(&json!({"model": "smollm2-135m", "prompt": prompt, "max_tokens": 4, "temperature": 0}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    ids.push(request_id(&r));
    let comp: Value = r.json().unwrap();
    // 4. Embeddings.
    let r = c
        .post(url("/v1/embeddings"))
        .bearer_auth(&key.secret)
        .json(&json!({"model": "minilm-l6", "input": ["SLOE-5521 one", "two"]}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    ids.push(request_id(&r));
    let emb: Value = r.json().unwrap();
    // 5. A request that fails after parsing is recorded as an error.
    let r = c
        .post(url("/v1/chat/completions"))
        .json(&json!({"model": "gpt-9", "messages": [{"role": "user", "content": "x"}]}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 404);
    ids.push(request_id(&r));
    // 6. A task run (escalates: the first tier's threshold is 1.0), then the same task as a chat model.
    let r = c
        .post(url("/v1/tasks/mood"))
        .bearer_auth(&key.secret)
        .json(&json!({"input": {"text": "I love it, DAMSON-3390"}}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    ids.push(request_id(&r));
    let task: Value = r.json().unwrap();
    let r = c
        .post(url("/v1/chat/completions"))
        .json(&json!({"model": "task:mood", "messages": [{"role": "user", "content": "Terrible, BULLACE-1200"}]}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    ids.push(request_id(&r));
    let task_chat: Value = r.json().unwrap();

    let lines = export(&db);
    println!(
        "{}",
        lines
            .iter()
            .map(|l| serde_json::to_string(l).unwrap())
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert_eq!(lines.len(), 7, "one record per request, no more");
    assert_eq!(
        lines.iter().map(|l| l.entry.seq).collect::<Vec<_>>(),
        (1..=7).collect::<Vec<_>>()
    );
    assert_eq!(
        lines.iter().map(|l| l.record.request_id.clone()).collect::<Vec<_>>(),
        ids,
        "in request order, under the ids clients got"
    );
    assert!(
        lines.windows(2).all(|w| w[1].entry.prev_hash == w[0].entry.hash),
        "chained"
    );
    let rec = |i: usize| &lines[i].record;

    let r = rec(0);
    assert_eq!((r.kind.as_str(), r.status.as_str()), ("request", "ok"));
    assert_eq!(r.key_id.as_deref(), Some(key.key.id.as_str()));
    assert_eq!(r.model.as_deref(), Some("smollm2-135m"));
    assert_eq!(r.model_hash.as_deref(), Some(smol.as_str()));
    assert_eq!(r.tokens_in, chat["usage"]["prompt_tokens"].as_i64().unwrap());
    assert_eq!(r.tokens_out, chat["usage"]["completion_tokens"].as_i64().unwrap());
    assert_eq!(
        r.input,
        content_hash(&json!([{"role": "user", "content": secret}]).to_string())
    );
    assert_eq!(
        r.output,
        content_hash(chat["choices"][0]["message"]["content"].as_str().unwrap())
    );
    assert!(r.latency_ms > 0.0 && r.cost_usd > 0.0, "{r:?}");
    assert!(r.task.is_none() && r.tier_path.is_empty());

    let r = rec(1);
    assert_eq!(r.key_id, None, "no key presented");
    assert_eq!(r.status, "ok");
    assert_eq!(r.output, content_hash(&streamed));
    assert_eq!(r.tokens_in, stream_usage["prompt_tokens"].as_i64().unwrap());
    assert_eq!(r.tokens_out, stream_usage["completion_tokens"].as_i64().unwrap());

    let r = rec(2);
    assert_eq!(r.input, content_hash(prompt));
    assert_eq!(r.output, content_hash(comp["choices"][0]["text"].as_str().unwrap()));
    assert_eq!(r.tokens_out, comp["usage"]["completion_tokens"].as_i64().unwrap());

    let r = rec(3);
    assert_eq!(r.model.as_deref(), Some("minilm-l6"));
    assert!(r.model_hash.as_deref().is_some_and(store_is_sha256), "{r:?}");
    assert_eq!(r.key_id.as_deref(), Some(key.key.id.as_str()));
    assert_eq!(r.input, content_hash(&json!(["SLOE-5521 one", "two"]).to_string()));
    assert_eq!(r.output, content_hash(&emb["data"].to_string()));
    assert_eq!(r.tokens_in, emb["usage"]["prompt_tokens"].as_i64().unwrap());

    let r = rec(4);
    assert_eq!(r.status, "error:404");
    // Not a configured model: free text from the client, kept as its keyed hash only.
    assert_eq!(r.model, Some(format!("unknown:{}", content_hash("gpt-9"))));
    assert_eq!(r.output, "", "nothing was answered");

    let r = rec(5);
    assert_eq!(r.kind, "task");
    assert_eq!(r.key_id.as_deref(), Some(key.key.id.as_str()));
    assert_eq!((r.task.as_deref(), r.task_version), (Some("mood"), Some(3)));
    assert_eq!(r.tier_path, ["local:smollm2-135m", "local:smol-b"]);
    assert_eq!(r.model.as_deref(), Some("local:smol-b"), "the answering tier");
    assert_eq!(
        r.model_hash.as_deref(),
        Some(smol.as_str()),
        "smol-b is the smollm2 file"
    );
    assert_eq!(
        r.input,
        content_hash(&json!({"text": "I love it, DAMSON-3390"}).to_string())
    );
    assert_eq!(r.output, content_hash(task["output"].as_str().unwrap()));
    assert_eq!(r.cost_usd, task["cost_usd"].as_f64().unwrap());
    let tokens: i64 = task["tiers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["tokens_in"].as_i64().unwrap())
        .sum();
    assert_eq!(r.tokens_in, tokens);

    let r = rec(6);
    assert_eq!((r.kind.as_str(), r.task.as_deref()), ("task", Some("mood")));
    assert_eq!(
        r.output,
        content_hash(task_chat["choices"][0]["message"]["content"].as_str().unwrap())
    );
    assert_eq!(
        r.input,
        content_hash(&json!({"text": "Terrible, BULLACE-1200"}).to_string())
    );

    let rep = verify(&db);
    assert!(rep.ok(), "{rep:?}");
    assert_eq!(rep.records, 7);
    assert_eq!(rep.head_hash, lines[6].entry.hash);

    // Hashes only: none of the raw text is anywhere in the database files.
    drop(s);
    let bytes = db_bytes(&db);
    for raw in [
        "PLUMTREE-7781",
        "QUINCE-4412",
        "MEDLAR-9034",
        "SLOE-5521",
        "DAMSON-3390",
        "BULLACE-1200",
    ] {
        assert!(!contains(&bytes, raw), "`{raw}` leaked into the store");
    }
    assert!(contains(&bytes, &ids[0]), "the records are in these files");
}

fn store_is_sha256(s: &str) -> bool {
    supply::is_sha256_hex(s)
}

#[test]
fn full_content_policy_and_a_failed_audit_write_fails_the_request() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("audit.db");
    let cfg = "audit = { content = \"full\", retention_days = 30 }\n[[model]]\nid = \"smollm2-135m\"\npin = true\nctx = 512\nmax_sequences = 2\n";
    let s = TestServer::start_full(cfg, None, Some(db.clone()));
    let chat = |content: &str, stream: bool| {
        TestServer::client()
            .post(format!("{}/v1/chat/completions", s.base))
            .json(&json!({"model": "smollm2-135m", "messages": [{"role": "user", "content": content}], "temperature": 0, "max_tokens": 6, "stream": stream}))
            .send()
            .unwrap()
    };
    let r = chat("Say hi. ROWAN-1", false);
    assert_eq!(r.status(), 200);
    let ok1 = request_id(&r);
    let answer: Value = r.json().unwrap();

    // The store refuses audit rows: nothing may be returned as a success.
    sql(
        &db,
        "CREATE TRIGGER refuse BEFORE INSERT ON audit_log BEGIN SELECT RAISE(ABORT, 'disk says no'); END;",
    );
    let r = chat("Say hi. ROWAN-2", false);
    assert_eq!(r.status(), 503);
    let failed = request_id(&r);
    let body: Value = r.json().unwrap();
    assert_eq!(body["error"]["code"], "audit_unavailable", "{body}");
    assert_eq!(body["error"]["type"], "server_error", "{body}");
    let r = chat("Say hi. ROWAN-3", true);
    assert_eq!(r.status(), 200, "the stream had started");
    let failed_stream = request_id(&r);
    let (_, done, events) = read_stream(r);
    assert!(!done, "no [DONE] without the audit record: {events:?}");
    let last = events.last().unwrap();
    assert!(last["error"]["message"].as_str().unwrap().contains("audit"), "{last}");
    assert!(
        events.iter().all(|e| e["choices"][0]["finish_reason"].is_null()),
        "no finish chunk: {events:?}"
    );

    sql(&db, "DROP TRIGGER refuse;");
    let r = chat("Say hi. ROWAN-4", false);
    assert_eq!(r.status(), 200);
    let ok2 = request_id(&r);

    let lines = export(&db);
    let ids: Vec<&str> = lines.iter().map(|l| l.record.request_id.as_str()).collect();
    assert_eq!(
        ids,
        [ok1.as_str(), ok2.as_str()],
        "failed writes left nothing half-written"
    );
    assert!(!ids.contains(&failed.as_str()) && !ids.contains(&failed_stream.as_str()));
    let r = &lines[0].record;
    assert_eq!(
        r.input,
        json!([{"role": "user", "content": "Say hi. ROWAN-1"}]).to_string(),
        "full: the text itself"
    );
    assert_eq!(r.output, answer["choices"][0]["message"]["content"].as_str().unwrap());
    assert!(verify(&db).ok());
}

#[test]
fn a_row_written_past_the_head_fails_requests_with_the_reason_until_removed() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("audit.db");
    let s = TestServer::start_full(
        "[[model]]\nid = \"smollm2-135m\"\npin = true\nctx = 512\nmax_sequences = 2\n",
        None,
        Some(db.clone()),
    );
    let chat = || {
        TestServer::client()
            .post(format!("{}/v1/chat/completions", s.base))
            .json(&json!({"model": "smollm2-135m", "messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 2}))
            .send()
            .unwrap()
    };
    assert_eq!(chat().status(), 200);
    // Someone with write access appends a row at the next seq, without the head.
    let cols = "prev_hash, hash, ts_ms, kind, request_id, key_id, task, task_version, model, model_hash, tier_path, guard, input, output, tokens_in, tokens_out, latency_ms, cost_usd, status";
    sql(
        &db,
        &format!("INSERT INTO audit_log (seq, {cols}) SELECT seq + 1, {cols} FROM audit_log WHERE seq = 1;"),
    );
    let r = chat();
    assert_eq!(r.status(), 503);
    let body: Value = r.json().unwrap();
    assert_eq!(body["error"]["code"], "audit_unavailable", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("past its head (seq 2)"),
        "{body}"
    );
    let rep = verify(&db);
    assert_eq!(
        rep.first_bad.map(|b| (b.seq, b.reason.contains("beyond the head"))),
        Some((2, true))
    );
    sql(&db, "DELETE FROM audit_log WHERE seq = 2;");
    assert_eq!(chat().status(), 200, "serving again once the row is gone");
    assert!(verify(&db).ok());
}
