//! Audit chain: appends verify, every kind of tampering is named, retention keeps the rest
//! verifiable, export is JSONL, concurrent appenders never fork or skip the chain.
//! Set STORE_TEST_POSTGRES_URL to run the same round trip on Postgres as well.

use crate::common;
use serde_json::json;
use store::{chain_hash, AuditLine, AuditRecord, Store, StoreError, GENESIS_HASH};

async fn temp_store() -> (Store, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path().join("rs.db").to_str().unwrap()).await.unwrap();
    (s, dir)
}

fn rec(i: i64) -> AuditRecord {
    AuditRecord {
        ts_ms: 1_000 * i,
        kind: if i % 2 == 0 { "request" } else { "task" }.into(),
        request_id: format!("req-{i}"),
        key_id: Some("key_abc".into()),
        task: (i % 2 == 1).then(|| "classify".into()),
        task_version: (i % 2 == 1).then_some(3),
        model: Some("qwen2.5-0.5b".into()),
        model_hash: Some("ab".repeat(32)),
        tier_path: vec!["smollm2-135m".into(), "qwen2.5-0.5b".into()],
        guard: json!({"pii": {"redacted": i}, "injection": "pass"}),
        input: format!("input {i} [EMAIL]"),
        output: store::content_hash(&format!("output {i}")),
        tokens_in: 10 + i,
        tokens_out: 5,
        latency_ms: 12.5 + i as f64 / 3.0,
        cost_usd: 0.000_001 * i as f64,
        status: "ok".into(),
    }
}

async fn append_n(s: &Store, n: i64) -> Vec<store::AuditEntry> {
    let mut out = Vec::new();
    for i in 1..=n {
        out.push(s.audit_append(&rec(i)).await.unwrap());
    }
    out
}

async fn exec(s: &Store, sql: &str) {
    sqlx::query(sql).execute(s.pool()).await.unwrap();
}

async fn first_bad(s: &Store) -> (i64, String) {
    let r = s.audit_verify().await.unwrap();
    let b = r.first_bad.expect("tampering must be detected");
    (b.seq, b.reason)
}

#[tokio::test]
async fn appends_chain_and_verify() {
    let (s, _d) = temp_store().await;
    assert!(s.audit_verify().await.unwrap().ok(), "an empty log verifies");
    let entries = append_n(&s, 20).await;
    assert_eq!(
        entries.iter().map(|e| e.seq).collect::<Vec<_>>(),
        (1..=20).collect::<Vec<_>>()
    );
    assert_eq!(entries[0].prev_hash, GENESIS_HASH);
    for w in entries.windows(2) {
        assert_eq!(w[1].prev_hash, w[0].hash);
    }
    // The documented rule reproduces the stored hashes.
    assert_eq!(entries[4].hash, chain_hash(&entries[3].hash, 5, &rec(5)));
    let r = s.audit_verify().await.unwrap();
    assert_eq!((r.records, r.head_seq, r.first_bad.clone()), (20, 20, None));
    assert_eq!(r.head_hash, entries[19].hash);
}

#[tokio::test]
async fn changed_record_is_named() {
    let (s, _d) = temp_store().await;
    append_n(&s, 10).await;
    exec(&s, "UPDATE audit_log SET output = 'nothing to see' WHERE seq = 5").await;
    assert_eq!(first_bad(&s).await, (5, "hash mismatch (record changed)".into()));
    assert_eq!(s.audit_verify().await.unwrap().records, 4);
}

#[tokio::test]
async fn changed_number_or_guard_is_named() {
    let (s, _d) = temp_store().await;
    append_n(&s, 10).await;
    exec(&s, "UPDATE audit_log SET cost_usd = 0 WHERE seq = 6").await;
    assert_eq!(first_bad(&s).await.0, 6);
    let (s, _d) = temp_store().await;
    append_n(&s, 10).await;
    exec(
        &s,
        "UPDATE audit_log SET guard = '{\"injection\":\"pass\"}' WHERE seq = 3",
    )
    .await;
    assert_eq!(first_bad(&s).await, (3, "hash mismatch (record changed)".into()));
}

#[tokio::test]
async fn removed_record_is_named() {
    let (s, _d) = temp_store().await;
    append_n(&s, 10).await;
    exec(&s, "DELETE FROM audit_log WHERE seq = 7").await;
    assert_eq!(first_bad(&s).await, (7, "sequence gap (record removed)".into()));
}

#[tokio::test]
async fn removed_and_renumbered_is_named() {
    let (s, _d) = temp_store().await;
    append_n(&s, 10).await;
    exec(&s, "DELETE FROM audit_log WHERE seq = 7").await;
    for seq in 8..=10 {
        exec(&s, &format!("UPDATE audit_log SET seq = {} WHERE seq = {seq}", seq - 1)).await;
    }
    exec(&s, "UPDATE audit_head SET last_seq = 9, records = 9").await;
    assert_eq!(
        first_bad(&s).await,
        (7, "previous-hash mismatch (reordered or removed)".into())
    );
}

#[tokio::test]
async fn swapped_records_are_named() {
    // Whole rows swapped (their hashes travel with them).
    let (s, _d) = temp_store().await;
    append_n(&s, 10).await;
    exec(&s, "UPDATE audit_log SET seq = -3 WHERE seq = 3").await;
    exec(&s, "UPDATE audit_log SET seq = 3 WHERE seq = 4").await;
    exec(&s, "UPDATE audit_log SET seq = 4 WHERE seq = -3").await;
    assert_eq!(
        first_bad(&s).await,
        (3, "previous-hash mismatch (reordered or removed)".into())
    );
    // Contents swapped, chain columns left in place.
    let (s, _d) = temp_store().await;
    append_n(&s, 10).await;
    exec(&s, "UPDATE audit_log SET ts_ms = CASE seq WHEN 3 THEN 4000 ELSE 3000 END, request_id = CASE seq WHEN 3 THEN 'req-4' ELSE 'req-3' END WHERE seq IN (3, 4)").await;
    assert_eq!(first_bad(&s).await, (3, "hash mismatch (record changed)".into()));
}

#[tokio::test]
async fn records_removed_from_the_end_are_named() {
    let (s, _d) = temp_store().await;
    append_n(&s, 10).await;
    exec(&s, "DELETE FROM audit_log WHERE seq > 8").await;
    assert_eq!(
        first_bad(&s).await,
        (9, "head mismatch (records removed from the end)".into())
    );
    // Last record rewritten with a correct-looking hash: the head still pins the old one.
    let (s, _d) = temp_store().await;
    let e = append_n(&s, 10).await;
    let mut forged = rec(10);
    forged.output = "forged".into();
    let h = chain_hash(&e[8].hash, 10, &forged);
    exec(
        &s,
        &format!("UPDATE audit_log SET output = 'forged', hash = '{h}' WHERE seq = 10"),
    )
    .await;
    assert_eq!(
        first_bad(&s).await,
        (10, "head mismatch (records removed from the end)".into())
    );
}

/// A copy of record `from` stored at `seq`, written straight into the table.
async fn insert_copy(s: &Store, from: i64, seq: i64) {
    let cols = "prev_hash, hash, ts_ms, kind, request_id, key_id, task, task_version, model, model_hash, tier_path, guard, input, output, tokens_in, tokens_out, latency_ms, cost_usd, status";
    exec(
        s,
        &format!("INSERT INTO audit_log (seq, {cols}) SELECT {seq}, {cols} FROM audit_log WHERE seq = {from}"),
    )
    .await;
}

const BEYOND: &str = "record beyond the head (written outside rightsize; appends fail until it is removed)";

#[tokio::test]
async fn rows_beyond_the_head_are_named_and_appends_say_why() {
    let (s, _d) = temp_store().await;
    append_n(&s, 5).await;
    insert_copy(&s, 5, 6).await;
    assert_eq!(first_bad(&s).await, (6, BEYOND.into()));
    assert_eq!(s.audit_verify().await.unwrap().records, 5, "the chain itself is whole");
    match s.audit_append(&rec(6)).await {
        Err(e @ StoreError::AuditBeyondHead { seq: 6, head: 5 }) => {
            assert!(e.to_string().contains("written outside rightsize"), "{e}")
        }
        other => panic!("{other:?}"),
    }
    // Further out too (not only at head + 1).
    exec(&s, "DELETE FROM audit_log WHERE seq = 6").await;
    insert_copy(&s, 5, 40).await;
    assert_eq!(first_bad(&s).await, (40, BEYOND.into()));
    // Removed: appends continue the chain and it verifies.
    exec(&s, "DELETE FROM audit_log WHERE seq = 40").await;
    assert_eq!(s.audit_append(&rec(6)).await.unwrap().seq, 6);
    assert!(s.audit_verify().await.unwrap().ok());
    // A row put back into the pruned range is named as well.
    assert_eq!(s.audit_prune(3_500).await.unwrap(), 3);
    insert_copy(&s, 4, 2).await;
    assert_eq!(
        first_bad(&s).await,
        (
            2,
            "record before the anchor (written outside rightsize into the pruned range)".into()
        )
    );
}

#[tokio::test]
async fn prune_keeps_the_rest_verifiable() {
    let (s, _d) = temp_store().await;
    for i in 1..=10 {
        // ts_ms = 1000 * seq, except record 5, older than the cutoff but after newer ones.
        let r = if i == 5 {
            AuditRecord { ts_ms: 100, ..rec(5) }
        } else {
            rec(i)
        };
        s.audit_append(&r).await.unwrap();
    }
    // The chain is cut only at its start: 1..=3 go, 5 stays.
    assert_eq!(s.audit_prune(3_500).await.unwrap(), 3);
    let r = s.audit_verify().await.unwrap();
    assert_eq!((r.records, r.anchor_seq, r.head_seq, r.ok()), (7, 3, 10, true));
    let left: Vec<i64> = sqlx::query_scalar("SELECT seq FROM audit_log ORDER BY seq")
        .fetch_all(s.pool())
        .await
        .unwrap();
    assert_eq!(left, (4..=10).collect::<Vec<_>>());
    assert_eq!(s.audit_prune(3_500).await.unwrap(), 0, "nothing more to prune");
    assert_eq!(s.audit_append(&rec(11)).await.unwrap().seq, 11);
    let r = s.audit_verify().await.unwrap();
    assert_eq!((r.records, r.ok()), (8, true));
    // Tampering after a prune is still found, at the first kept record too.
    exec(&s, "UPDATE audit_log SET input = 'x' WHERE seq = 4").await;
    assert_eq!(first_bad(&s).await, (4, "hash mismatch (record changed)".into()));
    exec(&s, "UPDATE audit_log SET input = 'input 4 [EMAIL]' WHERE seq = 4").await;
    assert!(s.audit_verify().await.unwrap().ok());
    // Pruning everything leaves an empty, verifiable chain that appends continue.
    assert_eq!(s.audit_prune(i64::MAX).await.unwrap(), 8);
    s.audit_append(&rec(12)).await.unwrap();
    let r = s.audit_verify().await.unwrap();
    assert_eq!((r.records, r.anchor_seq, r.head_seq, r.ok()), (1, 11, 12, true));
    exec(&s, "DELETE FROM audit_log WHERE seq = 12").await;
    assert_eq!(first_bad(&s).await.0, 12);
}

#[tokio::test]
async fn export_writes_jsonl() {
    let (s, _d) = temp_store().await;
    append_n(&s, 12).await;
    let mut buf = Vec::new();
    assert_eq!(s.audit_export(&mut buf, None).await.unwrap(), 12);
    let lines: Vec<AuditLine> = String::from_utf8(buf)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 12);
    let mut prev = GENESIS_HASH.to_string();
    for (i, l) in lines.iter().enumerate() {
        assert_eq!(l.entry.seq, i as i64 + 1);
        assert_eq!(l.record, rec(l.entry.seq), "exported records read back unchanged");
        assert_eq!(
            chain_hash(&prev, l.entry.seq, &l.record),
            l.entry.hash,
            "export is verifiable offline"
        );
        prev = l.entry.hash.clone();
    }
    let mut buf = Vec::new();
    assert_eq!(s.audit_export(&mut buf, Some(9_000)).await.unwrap(), 4);
    assert_eq!(String::from_utf8(buf).unwrap().lines().count(), 4);
}

#[tokio::test]
async fn odd_values_round_trip_and_bad_ones_are_refused() {
    let (s, _d) = temp_store().await;
    let mut r = rec(1);
    // 5 * 1e-6 is 4.9999999999999996e-6: serde_json parses it back exactly only with float_roundtrip.
    r.guard = json!({"z": [1, {"b": 0.1, "a": 5.0 * 1e-6}], "a": null, "m": "é\u{1F600}", "big": u64::MAX});
    r.input = "nul\0 inside, quotes \" and \\ and\nnewline".into();
    r.latency_ms = -0.0;
    r.cost_usd = 1e300;
    r.key_id = None;
    s.audit_append(&r).await.unwrap();
    s.audit_append(&rec(2)).await.unwrap();
    assert!(s.audit_verify().await.unwrap().ok());
    let mut buf = Vec::new();
    s.audit_export(&mut buf, None).await.unwrap();
    let first: AuditLine = serde_json::from_str(String::from_utf8(buf).unwrap().lines().next().unwrap()).unwrap();
    assert_eq!(first.record.guard, r.guard);
    assert_eq!(first.record.input, "nul\u{FFFD} inside, quotes \" and \\ and\nnewline");
    assert_eq!(chain_hash(GENESIS_HASH, 1, &first.record), first.entry.hash);
    let mut bad = rec(3);
    bad.latency_ms = f64::NAN;
    assert!(matches!(s.audit_append(&bad).await, Err(StoreError::Invalid(_))));
    bad = rec(3);
    bad.request_id.clear();
    assert!(matches!(s.audit_append(&bad).await, Err(StoreError::Invalid(_))));
    assert_eq!(
        s.audit_verify().await.unwrap().records,
        2,
        "refused records leave no trace"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_appenders_never_fork_the_chain() {
    let (s, _d) = temp_store().await;
    let tasks: Vec<_> = (0..8)
        .map(|t| {
            let s = s.clone();
            tokio::spawn(async move {
                for i in 0..50 {
                    s.audit_append(&rec(t * 100 + i)).await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let r = s.audit_verify().await.unwrap();
    assert_eq!((r.records, r.head_seq, r.ok()), (400, 400, true));
    let seqs: Vec<i64> = sqlx::query_scalar("SELECT seq FROM audit_log ORDER BY seq")
        .fetch_all(s.pool())
        .await
        .unwrap();
    assert_eq!(seqs, (1..=400).collect::<Vec<_>>());
}

#[tokio::test]
async fn reopening_continues_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rs.db");
    let first = {
        let s = Store::open(path.to_str().unwrap()).await.unwrap();
        append_n(&s, 5).await
    };
    let s = Store::open(path.to_str().unwrap()).await.unwrap();
    let e = s.audit_append(&rec(6)).await.unwrap();
    assert_eq!((e.seq, e.prev_hash.as_str()), (6, first[4].hash.as_str()));
    let r = s.audit_verify().await.unwrap();
    assert_eq!((r.records, r.ok()), (6, true));
}

#[tokio::test]
async fn postgres_round_trip_when_configured() {
    let Some((url, _turn)) = common::postgres_public("audit").await else {
        return;
    };
    let s = Store::open(&url).await.unwrap();
    for t in ["audit_log", "audit_head"] {
        exec(&s, &format!("DROP TABLE {t}")).await; // a scratch database only
    }
    let s = Store::open(&url).await.unwrap();
    append_n(&s, 25).await; // ts_ms <= 25_000, then concurrent appends with ts_ms >= 100_000
    let other = Store::open(&url).await.unwrap(); // a second instance (own pool) on the same chain
    let tasks: Vec<_> = (1..=4)
        .map(|t| {
            let s = if t % 2 == 0 { s.clone() } else { other.clone() };
            tokio::spawn(async move {
                for i in 0..19 {
                    s.audit_append(&rec(t * 100 + i)).await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let mut odd = rec(1);
    odd.input = "nul\0".into();
    odd.latency_ms = -0.0;
    s.audit_append(&odd).await.unwrap();
    let r = s.audit_verify().await.unwrap();
    assert_eq!((r.records, r.ok()), (102, true));
    assert_eq!(s.audit_prune(50_000).await.unwrap(), 25);
    assert_eq!(s.audit_verify().await.unwrap().records, 77);
    insert_copy(&s, 102, 103).await;
    assert_eq!(first_bad(&s).await, (103, BEYOND.into()));
    assert!(matches!(
        s.audit_append(&rec(7)).await,
        Err(StoreError::AuditBeyondHead { seq: 103, head: 102 })
    ));
    exec(&s, "DELETE FROM audit_log WHERE seq = 103").await;
    exec(&s, "UPDATE audit_log SET tokens_out = 6 WHERE seq = 40").await;
    assert_eq!(first_bad(&s).await.0, 40);
}
