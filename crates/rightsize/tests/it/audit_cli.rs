//! `rightsize audit verify|export|prune` on a real store file: a good chain verifies with its
//! count and head hash; a record changed or removed with SQL makes `verify` exit non-zero
//! naming it, and `prune` refuses; export is JSONL; prune by age keeps the rest verifiable.

use crate::common::{rightsize_merged as rightsize, BIN};
use serde_json::{json, Value};
use std::path::Path;
use std::process::Command;

/// Run SQL on the SQLite file from outside (Python's sqlite3), as someone tampering would.
fn sql(db: &Path, stmt: &str) {
    let script = "import sqlite3, sys\nc = sqlite3.connect(sys.argv[1], timeout=30)\nc.executescript(sys.argv[2])\nc.commit()\nc.close()\n";
    let out = Command::new("python3")
        .args(["-c", script, db.to_str().unwrap(), stmt])
        .output()
        .expect("python3");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

fn record(i: i64, ts_ms: i64) -> store::AuditRecord {
    store::AuditRecord {
        ts_ms,
        kind: "request".into(),
        request_id: format!("req-{i}"),
        key_id: Some("key_1".into()),
        task: None,
        task_version: None,
        model: Some("smollm2-135m".into()),
        model_hash: Some("ab".repeat(32)),
        tier_path: vec![],
        guard: json!({}),
        input: store::content_hash(&format!("input {i}")),
        output: store::content_hash(&format!("output {i}")),
        tokens_in: 10,
        tokens_out: 5,
        latency_ms: 12.5,
        cost_usd: 0.000_01,
        status: "ok".into(),
    }
}

#[test]
fn verify_names_the_tampered_record_export_and_prune() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("audit.db");
    let at = db.to_str().unwrap();
    // Records 1-3 are 10 days old, 4-6 are new.
    let now = store::now_ms();
    let head = tokio::runtime::Runtime::new().unwrap().block_on(async {
        let s = store::Store::open(at).await.unwrap();
        let mut last = None;
        for i in 1..=6 {
            let ts = if i <= 3 { now - 10 * 86_400_000 } else { now };
            last = Some(s.audit_append(&record(i, ts)).await.unwrap());
        }
        last.unwrap()
    });

    let (ok, out) = rightsize(&["audit", "verify", "--store", at]);
    assert!(ok, "{out}");
    assert!(out.contains("OK: 6 records"), "{out}");
    assert!(out.contains(&head.hash), "prints the head hash: {out}");

    // Export: JSONL to a file, and a time filter.
    let file = dir.path().join("audit.jsonl");
    let (ok, out) = rightsize(&["audit", "export", "--store", at, "--out", file.to_str().unwrap()]);
    assert!(ok, "{out}");
    let lines: Vec<Value> = std::fs::read_to_string(&file)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 6);
    assert_eq!(lines[2]["seq"], 3);
    assert_eq!(lines[2]["request_id"], "req-3");
    assert_eq!(lines[5]["hash"], head.hash.as_str());
    let out = Command::new(BIN)
        .args([
            "audit",
            "export",
            "--store",
            at,
            "--since-ms",
            &(now - 1000).to_string(),
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8(out.stdout).unwrap();
    let ids: Vec<String> = stdout
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["request_id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(ids, ["req-4", "req-5", "req-6"]);

    // A changed number in record 2: verify fails and names it; prune refuses.
    sql(&db, "UPDATE audit_log SET tokens_out = 999 WHERE seq = 2;");
    let (ok, out) = rightsize(&["audit", "verify", "--store", at]);
    assert!(!ok, "a changed record must fail verification: {out}");
    assert!(out.contains("first bad record seq 2: hash mismatch"), "{out}");
    let (ok, out) = rightsize(&["audit", "prune", "--store", at, "--older-than-days", "5"]);
    assert!(!ok && out.contains("refusing to prune"), "{out}");
    sql(&db, "UPDATE audit_log SET tokens_out = 5 WHERE seq = 2;");
    assert!(rightsize(&["audit", "verify", "--store", at]).0, "restored");

    // Retention: the three old records go, the rest still verifies from the anchor.
    let (ok, out) = rightsize(&["audit", "prune", "--store", at, "--older-than-days", "5"]);
    assert!(ok && out.contains("pruned 3"), "{out}");
    let (ok, out) = rightsize(&["audit", "verify", "--store", at]);
    assert!(ok && out.contains("OK: 3 records"), "{out}");

    // A removed record (5) is named.
    sql(&db, "DELETE FROM audit_log WHERE seq = 5;");
    let (ok, out) = rightsize(&["audit", "verify", "--store", at, "--json"]);
    assert!(!ok, "{out}");
    assert!(out.contains("broken at record 5"), "{out}");
    let report: Value = serde_json::from_str(&out[..out.rfind('}').unwrap() + 1]).unwrap();
    assert_eq!(report["first_bad"]["seq"], 5, "{report}");
}

#[test]
fn a_missing_store_is_an_error_not_an_empty_chain() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.db");
    let (ok, out) = rightsize(&["audit", "verify", "--store", missing.to_str().unwrap()]);
    assert!(!ok && out.contains("no store"), "{out}");
    assert!(!missing.exists(), "verify must not create a store");
}

#[test]
fn verify_names_a_row_written_past_the_head() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("audit.db");
    let at = db.to_str().unwrap();
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let s = store::Store::open(at).await.unwrap();
        for i in 1..=3 {
            s.audit_append(&record(i, store::now_ms())).await.unwrap();
        }
    });
    // Before: such a row passed verify (only seqs up to the head were read).
    let cols = "prev_hash, hash, ts_ms, kind, request_id, key_id, task, task_version, model, model_hash, tier_path, guard, input, output, tokens_in, tokens_out, latency_ms, cost_usd, status";
    sql(
        &db,
        &format!("INSERT INTO audit_log (seq, {cols}) SELECT 4, {cols} FROM audit_log WHERE seq = 3;"),
    );
    let (ok, out) = rightsize(&["audit", "verify", "--store", at]);
    assert!(!ok, "{out}");
    assert!(out.contains("broken at record 4: record beyond the head"), "{out}");
    let (ok, out) = rightsize(&["audit", "prune", "--store", at, "--older-than-days", "0"]);
    assert!(!ok && out.contains("refusing to prune"), "{out}");
}
