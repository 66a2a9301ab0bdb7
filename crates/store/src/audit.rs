//! Audit log: one hash-chained record per request and task run.
//!
//! Why: an operator must be able to show who asked what (key, task and version), which model
//! answered (file hash, tier path), what the guards decided, what it cost, and that nobody
//! changed that trail afterwards. Each record holds the hash of the previous one, so changing,
//! removing or reordering any record breaks the chain there and `audit_verify` names the first
//! bad record. A one-row head (last seq, last hash, record count), updated in the same
//! transaction as each append, catches records removed from the *end* as well.
//!
//! What it does not protect against: anyone with write access to the database can rewrite the
//! whole chain and its head consistently. Against that, copy the head hash
//! (`VerifyReport::head_hash`, or the last line of `audit_export`) regularly somewhere that
//! person cannot write; a later verify must still pass through it.
//!
//! Hashing rule (changing it invalidates every stored chain):
//! `hash = hex(sha256(prev_hash ++ "\n" ++ canonical_json(seq, record)))`, `prev_hash` being the
//! previous record's lowercase hex hash (64 zeros before the first). `canonical_json` is compact
//! serde_json (no whitespace) of an object with exactly these keys, in this order: seq, ts_ms,
//! kind, request_id, key_id, task, task_version, model, model_hash, tier_path, guard, input,
//! output, tokens_in, tokens_out, latency_ms, cost_usd, status. Missing options are `null`;
//! `guard` has its object keys sorted at every depth; floats use serde_json's shortest
//! round-trip form. Before hashing and storing, -0.0 becomes 0.0 and NUL characters in text
//! become U+FFFD (Postgres text cannot hold NUL), so what is stored is exactly what was hashed.
//!
//! Durability and order: `audit_append` returns once its transaction has committed (SQLite WAL
//! with synchronous=FULL, or Postgres), so append before answering and fail the request if it
//! fails. Appends are serialised: each transaction first writes the head row (SQLite takes its
//! write lock before reading the head; Postgres locks the row) and on Postgres also takes a
//! transaction-scoped advisory lock. Retention (`audit_prune`) deletes the oldest part of the
//! chain and keeps the last deleted record's seq and hash as the anchor verification starts from.

use crate::{Store, StoreError};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};
use std::borrow::Cow;

/// The `prev_hash` of the first record.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";
const PAGE: i64 = 1000;
const HASH_MISMATCH: &str = "hash mismatch (record changed)";
const SEQ_GAP: &str = "sequence gap (record removed)";
const PREV_MISMATCH: &str = "previous-hash mismatch (reordered or removed)";
const HEAD_MISMATCH: &str = "head mismatch (records removed from the end)";
const BEYOND_HEAD: &str = "record beyond the head (written outside rightsize; appends fail until it is removed)";
const BEFORE_ANCHOR: &str = "record before the anchor (written outside rightsize into the pruned range)";

pub(crate) const AUDIT_SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS audit_log (
        seq BIGINT PRIMARY KEY, prev_hash TEXT NOT NULL, hash TEXT NOT NULL,
        ts_ms BIGINT NOT NULL, kind TEXT NOT NULL, request_id TEXT NOT NULL,
        key_id TEXT, task TEXT, task_version BIGINT, model TEXT, model_hash TEXT,
        tier_path TEXT NOT NULL, guard TEXT NOT NULL, input TEXT NOT NULL, output TEXT NOT NULL,
        tokens_in BIGINT NOT NULL, tokens_out BIGINT NOT NULL,
        latency_ms DOUBLE PRECISION NOT NULL, cost_usd DOUBLE PRECISION NOT NULL, status TEXT NOT NULL
    )",
    "CREATE INDEX IF NOT EXISTS audit_log_ts ON audit_log (ts_ms)",
    // One row: the chain head, and the anchor (last pruned record) verification starts from.
    "CREATE TABLE IF NOT EXISTS audit_head (
        id INTEGER PRIMARY KEY, last_seq BIGINT NOT NULL, last_hash TEXT NOT NULL,
        records BIGINT NOT NULL, anchor_seq BIGINT NOT NULL, anchor_hash TEXT NOT NULL
    )",
    "INSERT INTO audit_head (id, last_seq, last_hash, records, anchor_seq, anchor_hash)
     VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000', 0, 0,
             '0000000000000000000000000000000000000000000000000000000000000000')
     ON CONFLICT (id) DO NOTHING",
];

/// What one request or task run leaves in the audit log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Milliseconds since the Unix epoch (see [`now_ms`]).
    pub ts_ms: i64,
    /// `request` or `task`.
    pub kind: String,
    pub request_id: String,
    pub key_id: Option<String>,
    pub task: Option<String>,
    pub task_version: Option<i64>,
    pub model: Option<String>,
    /// sha256 of the model file.
    pub model_hash: Option<String>,
    /// Tiers tried, in order (escalation path).
    pub tier_path: Vec<String>,
    /// Guard outcomes, free-form JSON.
    pub guard: Value,
    /// Redacted input, or `sha256:<hex>` ([`content_hash`]) when policy keeps hashes only.
    pub input: String,
    /// Redacted output, or its [`content_hash`].
    pub output: String,
    pub tokens_in: i64,
    pub tokens_out: i64,
    pub latency_ms: f64,
    pub cost_usd: f64,
    /// e.g. `ok`, `error`, `refused`.
    pub status: String,
}

/// Position of a record in the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub seq: i64,
    pub prev_hash: String,
    pub hash: String,
}

/// A stored record with its place in the chain (one line of `audit_export`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditLine {
    #[serde(flatten)]
    pub entry: AuditEntry,
    #[serde(flatten)]
    pub record: AuditRecord,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BadRecord {
    /// The first record (seq) where the chain breaks; for a gap, the missing seq.
    pub seq: i64,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// Records checked and found good (all of them when `first_bad` is `None`).
    pub records: u64,
    /// Last pruned seq (0 if never pruned): verification starts after it.
    pub anchor_seq: i64,
    pub head_seq: i64,
    /// Keep a copy of this elsewhere: it pins the whole chain up to `head_seq`.
    pub head_hash: String,
    pub first_bad: Option<BadRecord>,
}

impl VerifyReport {
    pub fn ok(&self) -> bool {
        self.first_bad.is_none()
    }
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// `sha256:<hex>` of a text, for policies that keep hashes instead of (redacted) text.
pub fn content_hash(text: &str) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(text.as_bytes())))
}

fn sorted(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            Value::Object(keys.into_iter().map(|k| (k.clone(), sorted(&m[k]))).collect())
        }
        Value::Array(a) => Value::Array(a.iter().map(sorted).collect()),
        other => other.clone(),
    }
}

#[derive(Serialize)]
struct Canonical<'a> {
    seq: i64,
    ts_ms: i64,
    kind: &'a str,
    request_id: &'a str,
    key_id: &'a Option<String>,
    task: &'a Option<String>,
    task_version: Option<i64>,
    model: &'a Option<String>,
    model_hash: &'a Option<String>,
    tier_path: &'a [String],
    guard: Value,
    input: &'a str,
    output: &'a str,
    tokens_in: i64,
    tokens_out: i64,
    latency_ms: f64,
    cost_usd: f64,
    status: &'a str,
}

/// The canonical JSON of a record at `seq` (see the module docs). Apply to a stored record.
pub fn canonical_json(seq: i64, r: &AuditRecord) -> String {
    let z = |x: f64| if x == 0.0 { 0.0 } else { x };
    let c = Canonical {
        seq,
        ts_ms: r.ts_ms,
        kind: &r.kind,
        request_id: &r.request_id,
        key_id: &r.key_id,
        task: &r.task,
        task_version: r.task_version,
        model: &r.model,
        model_hash: &r.model_hash,
        tier_path: &r.tier_path,
        guard: sorted(&r.guard),
        input: &r.input,
        output: &r.output,
        tokens_in: r.tokens_in,
        tokens_out: r.tokens_out,
        latency_ms: z(r.latency_ms),
        cost_usd: z(r.cost_usd),
        status: &r.status,
    };
    serde_json::to_string(&c).expect("serialising plain data cannot fail")
}

/// The hash of the record at `seq` whose predecessor's hash is `prev_hash`.
pub fn chain_hash(prev_hash: &str, seq: i64, r: &AuditRecord) -> String {
    let mut h = Sha256::new();
    h.update(prev_hash.as_bytes());
    h.update(b"\n");
    h.update(canonical_json(seq, r).as_bytes());
    hex::encode(h.finalize())
}

/// The record as it will be stored: checked, -0.0 → 0.0, NUL → U+FFFD.
fn storable(r: &AuditRecord) -> Result<Cow<'_, AuditRecord>, StoreError> {
    if r.kind.is_empty() || r.request_id.is_empty() {
        return Err(StoreError::Invalid(
            "an audit record needs a kind and a request id".into(),
        ));
    }
    if !r.latency_ms.is_finite() || !r.cost_usd.is_finite() {
        return Err(StoreError::Invalid(
            "audit latency and cost must be finite numbers".into(),
        ));
    }
    let texts = [&r.kind, &r.request_id, &r.input, &r.output, &r.status]
        .into_iter()
        .chain(r.tier_path.iter());
    let opts = [&r.key_id, &r.task, &r.model, &r.model_hash].into_iter().flatten();
    let neg_zero = |x: f64| x == 0.0 && x.is_sign_negative();
    if !texts.chain(opts).any(|s| s.contains('\0')) && !neg_zero(r.latency_ms) && !neg_zero(r.cost_usd) {
        return Ok(Cow::Borrowed(r));
    }
    let fix = |s: &String| s.replace('\0', "\u{FFFD}");
    let fix_opt = |s: &Option<String>| s.as_ref().map(fix);
    let z = |x: f64| if x == 0.0 { 0.0 } else { x };
    Ok(Cow::Owned(AuditRecord {
        kind: fix(&r.kind),
        request_id: fix(&r.request_id),
        key_id: fix_opt(&r.key_id),
        task: fix_opt(&r.task),
        model: fix_opt(&r.model),
        model_hash: fix_opt(&r.model_hash),
        tier_path: r.tier_path.iter().map(fix).collect(),
        input: fix(&r.input),
        output: fix(&r.output),
        status: fix(&r.status),
        latency_ms: z(r.latency_ms),
        cost_usd: z(r.cost_usd),
        guard: r.guard.clone(),
        ..*r
    }))
}

struct Head {
    last_seq: i64,
    last_hash: String,
    records: i64,
    anchor_seq: i64,
    anchor_hash: String,
}

async fn read_head<'e, E: sqlx::Executor<'e, Database = Any>>(e: E) -> Result<Head, StoreError> {
    let r = sqlx::query("SELECT last_seq, last_hash, records, anchor_seq, anchor_hash FROM audit_head WHERE id = 1")
        .fetch_one(e)
        .await?;
    Ok(Head {
        last_seq: r.try_get("last_seq")?,
        last_hash: r.try_get("last_hash")?,
        records: r.try_get("records")?,
        anchor_seq: r.try_get("anchor_seq")?,
        anchor_hash: r.try_get("anchor_hash")?,
    })
}

fn row_to_line(r: &AnyRow) -> Result<AuditLine, StoreError> {
    let json = |col: &str| -> Result<Value, StoreError> {
        let s: String = r.try_get(col)?;
        serde_json::from_str(&s).map_err(|e| StoreError::Invalid(format!("audit column {col} is not JSON: {e}")))
    };
    let tier_path =
        serde_json::from_value(json("tier_path")?).map_err(|e| StoreError::Invalid(format!("audit tier_path: {e}")))?;
    Ok(AuditLine {
        entry: AuditEntry {
            seq: r.try_get("seq")?,
            prev_hash: r.try_get("prev_hash")?,
            hash: r.try_get("hash")?,
        },
        record: AuditRecord {
            ts_ms: r.try_get("ts_ms")?,
            kind: r.try_get("kind")?,
            request_id: r.try_get("request_id")?,
            key_id: r.try_get("key_id")?,
            task: r.try_get("task")?,
            task_version: r.try_get("task_version")?,
            model: r.try_get("model")?,
            model_hash: r.try_get("model_hash")?,
            tier_path,
            guard: json("guard")?,
            input: r.try_get("input")?,
            output: r.try_get("output")?,
            tokens_in: r.try_get("tokens_in")?,
            tokens_out: r.try_get("tokens_out")?,
            latency_ms: r.try_get("latency_ms")?,
            cost_usd: r.try_get("cost_usd")?,
            status: r.try_get("status")?,
        },
    })
}

impl Store {
    /// A transaction that alone may change the chain until it ends.
    async fn lock_audit_chain(&self) -> Result<Transaction<'static, Any>, StoreError> {
        let mut tx = self.pool().begin().await?;
        if self.is_postgres() {
            // Transaction-scoped: released by commit or rollback, even if this task is dropped.
            sqlx::query("SELECT pg_advisory_xact_lock(7596553827186419321)")
                .execute(&mut *tx)
                .await?;
        }
        // Write before reading: SQLite takes its write lock here (waiting out other writers).
        sqlx::query("UPDATE audit_head SET last_seq = last_seq WHERE id = 1")
            .execute(&mut *tx)
            .await?;
        Ok(tx)
    }

    /// Append a record to the chain; it is durable when this returns.
    pub async fn audit_append(&self, rec: &AuditRecord) -> Result<AuditEntry, StoreError> {
        let rec = storable(rec)?;
        let tier = serde_json::to_string(&rec.tier_path).map_err(|e| StoreError::Invalid(e.to_string()))?;
        let guard = sorted(&rec.guard).to_string();
        let mut tx = self.lock_audit_chain().await?;
        let head = read_head(&mut *tx).await?;
        let seq = head.last_seq + 1;
        let hash = chain_hash(&head.last_hash, seq, &rec);
        sqlx::query(
            "INSERT INTO audit_log (seq, prev_hash, hash, ts_ms, kind, request_id, key_id, task, task_version, model,
             model_hash, tier_path, guard, input, output, tokens_in, tokens_out, latency_ms, cost_usd, status)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20)",
        )
        .bind(seq)
        .bind(&head.last_hash)
        .bind(&hash)
        .bind(rec.ts_ms)
        .bind(&rec.kind)
        .bind(&rec.request_id)
        .bind(rec.key_id.as_deref())
        .bind(rec.task.as_deref())
        .bind(rec.task_version)
        .bind(rec.model.as_deref())
        .bind(rec.model_hash.as_deref())
        .bind(tier)
        .bind(guard)
        .bind(&rec.input)
        .bind(&rec.output)
        .bind(rec.tokens_in)
        .bind(rec.tokens_out)
        .bind(rec.latency_ms)
        .bind(rec.cost_usd)
        .bind(&rec.status)
        .execute(&mut *tx)
        .await
        .map_err(|e| match e {
            // The seq after the head is taken: a row was inserted past the head from outside.
            sqlx::Error::Database(d) if d.is_unique_violation() => StoreError::AuditBeyondHead {
                seq,
                head: head.last_seq,
            },
            e => e.into(),
        })?;
        sqlx::query("UPDATE audit_head SET last_seq = $1, last_hash = $2, records = records + 1 WHERE id = 1")
            .bind(seq)
            .bind(&hash)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(AuditEntry {
            seq,
            prev_hash: head.last_hash,
            hash,
        })
    }

    /// Up to `limit` records with `after < seq <= upto` and `ts_ms >= since_ms`, in seq order.
    async fn audit_page(&self, after: i64, upto: i64, since_ms: i64, limit: i64) -> Result<Vec<AnyRow>, StoreError> {
        Ok(sqlx::query(
            "SELECT seq, prev_hash, hash, ts_ms, kind, request_id, key_id, task, task_version, model, model_hash,
             tier_path, guard, input, output, tokens_in, tokens_out, latency_ms, cost_usd, status
             FROM audit_log WHERE seq > $1 AND seq <= $2 AND ts_ms >= $3 ORDER BY seq LIMIT $4",
        )
        .bind(after)
        .bind(upto)
        .bind(since_ms)
        .bind(limit)
        .fetch_all(self.pool())
        .await?)
    }

    /// Recompute the chain from the anchor to the head (as it was when verification started;
    /// later appends are not checked), then look for rows outside the chain: before the anchor
    /// or beyond the head. Do not prune while verifying: that reads as a gap.
    pub async fn audit_verify(&self) -> Result<VerifyReport, StoreError> {
        let head = read_head(self.pool()).await?;
        let mut rep = VerifyReport {
            records: 0,
            anchor_seq: head.anchor_seq,
            head_seq: head.last_seq,
            head_hash: head.last_hash.clone(),
            first_bad: None,
        };
        let (mut next, mut prev) = (head.anchor_seq + 1, head.anchor_hash.clone());
        let bad = |mut rep: VerifyReport, seq: i64, reason: &str| {
            rep.first_bad = Some(BadRecord {
                seq,
                reason: reason.into(),
            });
            Ok(rep)
        };
        loop {
            let rows = self.audit_page(next - 1, head.last_seq, i64::MIN, PAGE).await?;
            if rows.is_empty() {
                break;
            }
            for r in &rows {
                let seq: i64 = r.try_get("seq")?;
                if seq != next {
                    return bad(rep, next, SEQ_GAP);
                }
                // A row that no longer decodes (a column rewritten with another type) was changed.
                let Ok(line) = row_to_line(r) else {
                    return bad(rep, seq, HASH_MISMATCH);
                };
                if line.entry.prev_hash != prev {
                    return bad(rep, seq, PREV_MISMATCH);
                }
                if chain_hash(&prev, seq, &line.record) != line.entry.hash {
                    return bad(rep, seq, HASH_MISMATCH);
                }
                (next, prev) = (seq + 1, line.entry.hash);
                rep.records += 1;
            }
        }
        if next - 1 != head.last_seq || prev != head.last_hash || rep.records as i64 != head.records {
            return bad(
                rep,
                if next - 1 != head.last_seq { next } else { head.last_seq },
                HEAD_MISMATCH,
            );
        }
        // Rows outside (anchor, head] are not part of the chain: nothing rightsize writes puts
        // them there (an append past the head would collide with them). Each check reads the
        // head in the same statement, so appends and prunes meanwhile do not count.
        let outside = |sql: &'static str| sqlx::query_scalar::<_, Option<i64>>(sql).fetch_one(self.pool());
        if let Some(seq) =
            outside("SELECT MAX(seq) FROM audit_log WHERE seq <= (SELECT anchor_seq FROM audit_head WHERE id = 1)")
                .await?
        {
            return bad(rep, seq, BEFORE_ANCHOR);
        }
        if let Some(seq) =
            outside("SELECT MIN(seq) FROM audit_log WHERE seq > (SELECT last_seq FROM audit_head WHERE id = 1)").await?
        {
            return bad(rep, seq, BEYOND_HEAD);
        }
        Ok(rep)
    }

    /// Write records (with seq, prev_hash, hash) as JSON lines, oldest first; `since_ms` keeps
    /// only records with `ts_ms >= since_ms`. Returns the number of lines.
    pub async fn audit_export(&self, w: &mut impl std::io::Write, since_ms: Option<i64>) -> Result<u64, StoreError> {
        let io = |e: std::io::Error| StoreError::Invalid(format!("cannot write the audit export: {e}"));
        let head = read_head(self.pool()).await?;
        let (mut after, mut n) = (head.anchor_seq, 0u64);
        loop {
            let rows = self
                .audit_page(after, head.last_seq, since_ms.unwrap_or(i64::MIN), PAGE)
                .await?;
            let Some(last) = rows.last() else { break };
            after = last.try_get("seq")?;
            for r in &rows {
                serde_json::to_writer(&mut *w, &row_to_line(r)?).map_err(|e| io(e.into()))?;
                w.write_all(b"\n").map_err(io)?;
                n += 1;
            }
        }
        w.flush().map_err(io)?;
        Ok(n)
    }

    /// Retention: delete the oldest records, up to (not including) the first one with
    /// `ts_ms >= older_than_ms` — the chain is cut only at its start, so a record older than
    /// the cutoff that follows a newer one stays. The last deleted record becomes the anchor
    /// that verification starts from. Returns the number of records deleted.
    pub async fn audit_prune(&self, older_than_ms: i64) -> Result<u64, StoreError> {
        let mut tx = self.lock_audit_chain().await?;
        let head = read_head(&mut *tx).await?;
        let first_kept: Option<i64> = sqlx::query_scalar("SELECT MIN(seq) FROM audit_log WHERE ts_ms >= $1")
            .bind(older_than_ms)
            .fetch_one(&mut *tx)
            .await?;
        let through = first_kept.map_or(head.last_seq, |s| s - 1);
        if through <= head.anchor_seq {
            return Ok(0);
        }
        let hash: Option<String> = sqlx::query_scalar("SELECT hash FROM audit_log WHERE seq = $1")
            .bind(through)
            .fetch_optional(&mut *tx)
            .await?;
        let hash =
            hash.ok_or_else(|| StoreError::Invalid(format!("audit record {through} is missing: run `audit verify`")))?;
        let n = sqlx::query("DELETE FROM audit_log WHERE seq <= $1")
            .bind(through)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        sqlx::query("UPDATE audit_head SET anchor_seq = $1, anchor_hash = $2, records = records - $3 WHERE id = 1")
            .bind(through)
            .bind(hash)
            .bind(n as i64)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(n)
    }
}
