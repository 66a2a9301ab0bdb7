//! `rightsize stats` shows the continuous-evaluation block: shadow agreement per day, the
//! rolling agreement under the config's drift rule, the newest re-evaluation, and the alert.
//! The store is filled through the store API (the server tests cover how rows get there).

use crate::common::rightsize;

fn sample(i: usize, task: &str, agreement: f64) -> store::ShadowRecord {
    store::ShadowRecord {
        run_id: format!("run_{task}_{i}"),
        ts_ms: store::now_ms() - 1000 + i as i64,
        task: task.into(),
        version: 1,
        served_tier: "classifier:minilm-l6".into(),
        shadow_tier: "local:qwen2.5-0.5b".into(),
        agreement: Some(agreement),
        latency_ms: 100.0,
        cost_usd: 0.0001,
        error: None,
    }
}

#[test]
fn stats_shows_shadow_agreement_and_drift_alerts() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("rs.db");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let s = store::Store::open(db.to_str().unwrap()).await.unwrap();
        for i in 0..5 {
            s.record_shadow(&sample(i, "steady", 1.0)).await.unwrap();
            s.record_shadow(&sample(i, "drifting", if i == 0 { 1.0 } else { 0.0 }))
                .await
                .unwrap();
        }
    });
    let cfg = dir.path().join("rs.toml");
    std::fs::write(
        &cfg,
        "[shadow]\nwindow = 4\nmin_samples = 4\nmin_agreement = 0.5\n[[model]]\nid = \"smollm2-135m\"\n",
    )
    .unwrap();
    let (db, cfg) = (db.to_str().unwrap(), cfg.to_str().unwrap());

    let (ok, out, err) = rightsize(&["stats", "--store", db, "--config", cfg, "--json"]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let shadow = v["shadow"].as_array().unwrap();
    let by = |t: &str| shadow.iter().find(|d| d["task"] == t).unwrap().clone();
    let (steady, drifting) = (by("steady"), by("drifting"));
    assert_eq!(
        (steady["samples"].as_u64(), steady["drift_alert"].as_bool()),
        (Some(5), Some(false)),
        "{steady}"
    );
    // The window is the last 4 samples (all 0); the day's mean counts all 5 (one agreed).
    assert_eq!(
        (
            drifting["rolling_agreement"].as_f64(),
            drifting["rolling_samples"].as_u64()
        ),
        (Some(0.0), Some(4)),
        "{drifting}"
    );
    assert_eq!(drifting["days"][0]["agreement"].as_f64(), Some(0.2));
    assert_eq!(drifting["drift_alert"], true);
    assert!(v["days"].as_array().unwrap().is_empty(), "no task runs were recorded");

    let (ok, out, err) = rightsize(&["stats", "--store", db, "--config", cfg]);
    assert!(ok, "{err}");
    let line = |t: &str| out.lines().rfind(|l| l.starts_with(t)).unwrap_or_default().to_owned();
    assert!(
        line("drifting").contains("DRIFT ALERT: drifting: shadow agreement 0.000 over the last 4 samples"),
        "{out}"
    );
    assert!(
        line("steady").contains("rolling 100.0% over 4 of 4 samples") && line("steady").contains("no drift"),
        "{out}"
    );
    // One task only, and a laxer rule from another config: quiet.
    std::fs::write(
        dir.path().join("lax.toml"),
        "[shadow]\nwindow = 4\nmin_samples = 4\nmin_agreement = 0.0\n[[model]]\nid = \"smollm2-135m\"\n",
    )
    .unwrap();
    let (ok, out, _) = rightsize(&[
        "stats",
        "--store",
        db,
        "--config",
        dir.path().join("lax.toml").to_str().unwrap(),
        "--task",
        "drifting",
        "--json",
    ]);
    assert!(ok);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (v["shadow"].as_array().unwrap().len(), &v["shadow"][0]["drift_alert"]),
        (1, &serde_json::json!(false))
    );
}
