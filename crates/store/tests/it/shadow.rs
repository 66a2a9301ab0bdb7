//! Shadow runs and re-evaluations round-trip through the store (SQLite always; Postgres when
//! STORE_TEST_POSTGRES_URL names a scratch database), and drift is judged from the rows.

use crate::common;
use std::collections::BTreeMap;
use store::{DriftRule, ReevalRecord, ShadowRecord, Store};

const DAY: i64 = 86_400_000;

fn shadow(i: i64, ts_ms: i64, agreement: Option<f64>) -> ShadowRecord {
    ShadowRecord {
        run_id: format!("run_{i:04}"),
        ts_ms,
        task: "t".into(),
        version: 1,
        served_tier: "classifier:minilm-l6".into(),
        shadow_tier: "local:qwen2.5-0.5b".into(),
        agreement,
        latency_ms: 12.5,
        cost_usd: 0.001,
        error: agreement.is_none().then(|| "timed out".into()),
    }
}

fn reeval(id: &str, ts_ms: i64, version: i64, quality: f64, alert: bool) -> ReevalRecord {
    ReevalRecord {
        id: id.into(),
        ts_ms,
        task: "t".into(),
        version,
        dataset: "data/t.jsonl".into(),
        dataset_hash: "abc".into(),
        config: "a@0.50 > b".into(),
        n: 8,
        quality,
        summary: serde_json::json!({"quality": quality}),
        tiers: BTreeMap::from([("a".into(), quality), ("b".into(), 1.0)]),
        baseline_quality: None,
        baseline_version: None,
        alert,
        reason: alert.then(|| "t: quality dropped".into()),
        seconds: 1.5,
    }
}

async fn exercise(s: &Store) {
    let rule = DriftRule {
        window: 4,
        min_samples: 3,
        min_agreement: 0.75,
    };
    // Day 1: two agreeing samples and a failed shadow run; day 2: three disagreeing samples.
    for (i, ts, a) in [
        (1, DAY, Some(1.0)),
        (2, DAY + 1, Some(1.0)),
        (3, DAY + 2, None),
        (4, 2 * DAY, Some(0.0)),
        (5, 2 * DAY + 1, Some(0.0)),
        (6, 2 * DAY + 2, Some(0.5)),
    ] {
        s.record_shadow(&shadow(i, ts, a)).await.unwrap();
    }
    let rows = s.shadow_runs("t", 10).await.unwrap();
    assert_eq!(rows.len(), 6);
    assert_eq!(
        rows[0],
        shadow(6, 2 * DAY + 2, Some(0.5)),
        "newest first, every field back"
    );
    assert_eq!(rows[3].agreement, None);
    // The window is the last 4 *scored* samples: 0.5, 0, 0, 1.
    assert_eq!(s.shadow_rolling("t", 4).await.unwrap(), (4, Some(0.375)));
    let d = s.drift("t", 0, &rule).await.unwrap();
    assert_eq!(d.samples, 6);
    assert_eq!(d.days.len(), 2);
    assert_eq!(
        (
            d.days[0].day.as_str(),
            d.days[0].samples,
            d.days[0].errors,
            d.days[0].agreement
        ),
        ("1970-01-02", 3, 1, Some(1.0))
    );
    assert_eq!(d.days[1].agreement, Some(0.5 / 3.0));
    assert!(d.drift_alert && d.reasons[0].contains("0.375"), "{d:?}");
    assert!(d.reeval.is_none());
    // Since day 2 only: the per-day rows shrink, the rolling window does not.
    assert_eq!(s.drift("t", 2 * DAY, &rule).await.unwrap().days.len(), 1);
    // Quiet when the bar is lower, and for a task with no samples.
    assert!(
        !s.drift(
            "t",
            0,
            &DriftRule {
                min_agreement: 0.3,
                ..rule
            }
        )
        .await
        .unwrap()
        .drift_alert
    );
    assert!(!s.drift("other", 0, &rule).await.unwrap().drift_alert);

    // Re-evals: the baseline is the newest non-alerting one on the same data set content.
    assert!(s.reeval_baseline("t", "abc").await.unwrap().is_none());
    s.record_reeval(&reeval("r1", 10, 1, 0.9, false)).await.unwrap();
    s.record_reeval(&reeval("r2", 20, 2, 0.4, true)).await.unwrap();
    let mut other_data = reeval("r3", 30, 2, 0.95, false);
    other_data.dataset_hash = "def".into();
    s.record_reeval(&other_data).await.unwrap();
    let base = s.reeval_baseline("t", "abc").await.unwrap().unwrap();
    assert_eq!(
        base,
        reeval("r1", 10, 1, 0.9, false),
        "the alerting run is not a baseline; every field back"
    );
    assert_eq!(s.reeval_baseline("t", "def").await.unwrap().unwrap().id, "r3");
    assert_eq!(
        s.reevals("t", 10)
            .await
            .unwrap()
            .iter()
            .map(|r| r.id.as_str())
            .collect::<Vec<_>>(),
        ["r3", "r2", "r1"]
    );
    // The newest re-eval (r3) raised no alert: only the shadow reason remains.
    let d = s.drift("t", 0, &rule).await.unwrap();
    assert_eq!((d.reeval.as_ref().unwrap().id.as_str(), d.reasons.len()), ("r3", 1));
    s.record_reeval(&reeval("r4", 40, 2, 0.4, true)).await.unwrap();
    let d = s
        .drift(
            "t",
            0,
            &DriftRule {
                min_agreement: 0.0,
                ..rule
            },
        )
        .await
        .unwrap();
    assert!(d.drift_alert && d.reasons == ["t: quality dropped"], "{d:?}");
    assert_eq!(s.drift_tasks().await.unwrap(), ["t"]);
}

#[tokio::test]
async fn sqlite_round_trip_and_drift() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path().join("s.db").to_str().unwrap()).await.unwrap();
    exercise(&s).await;
    // Reopening keeps the rows (tables are created only when missing).
    let s = Store::open(dir.path().join("s.db").to_str().unwrap()).await.unwrap();
    assert_eq!(s.shadow_runs("t", 100).await.unwrap().len(), 6);
}

#[tokio::test]
async fn postgres_round_trip_when_configured() {
    let Some((url, _turn)) = common::postgres_public("shadow").await else {
        return;
    };
    let s = Store::open(&url).await.unwrap();
    for t in ["shadow_runs", "reevals"] {
        sqlx::query(&format!("DROP TABLE {t}")).execute(s.pool()).await.unwrap();
        // a scratch database only
    }
    exercise(&Store::open(&url).await.unwrap()).await;
}
