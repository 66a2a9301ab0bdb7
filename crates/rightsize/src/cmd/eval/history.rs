//! Stored eval runs: every `rightsize eval` adds a row to the store's `eval_runs` (what was
//! measured — task version, data set sha256, model file hashes — and what was chosen), and
//! `rightsize eval TASK --history` lists them so runs can be compared.

use anyhow::Result;
use std::collections::BTreeMap;

/// The row for one run.
pub fn record(
    task: &mesh::Task,
    dataset: &std::path::Path,
    model_hashes: BTreeMap<String, String>,
    report: &eval::EvalReport,
    json: &serde_json::Value,
) -> Result<store::EvalRunRecord> {
    let chosen = &report.selection.chosen;
    Ok(store::EvalRunRecord {
        id: format!("eval_{:016x}", rand_id()),
        ts_ms: store::now_ms(),
        task: task.spec.name.clone(),
        version: task.spec.version,
        dataset: dataset.display().to_string(),
        dataset_sha256: supply::sha256_file(dataset, &supply::NoProgress)?,
        model_hashes,
        chosen: chosen.label.clone(),
        strategy: serde_json::to_value(&chosen.strategy)?,
        meets_bar: report.selection.meets_bar,
        dev_quality: chosen.quality.mean,
        test_quality: report.test.as_ref().map(|t| t.quality.mean),
        dev_cost_per_1k: chosen.cost_per_1k,
        test_cost_per_1k: report.test.as_ref().map(|t| t.cost_per_1k),
        report: json.clone(),
    })
}

fn rand_id() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    t.as_nanos() as u64 ^ (std::process::id() as u64).rotate_left(40)
}

/// `rightsize eval TASK --history`.
pub fn list(store_at: &str, task: &str, limit: i64, as_json: bool) -> Result<()> {
    let rt = tokio::runtime::Runtime::new()?;
    let rows = rt.block_on(async {
        let store = store::Store::open(store_at).await?;
        anyhow::Ok(store.eval_runs(Some(task), limit).await?)
    })?;
    if as_json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    if rows.is_empty() {
        println!("no stored eval runs for task `{task}`");
        return Ok(());
    }
    println!(
        "{:<22} {:<16} {:>3} {:<12} {:>8} {:>8} {:>11} {:<40} MODELS",
        "ID", "WHEN (UTC)", "V", "DATA SHA256", "DEV Q", "TEST Q", "COST/1K", "CHOSEN"
    );
    for r in rows {
        let ms = r.ts_ms.rem_euclid(86_400_000);
        let when = format!(
            "{} {:02}:{:02}",
            store::day_of(r.ts_ms),
            ms / 3_600_000,
            ms / 60_000 % 60
        );
        let models = r
            .model_hashes
            .iter()
            .map(|(m, h)| format!("{m}={}", &h[..h.len().min(8)]))
            .collect::<Vec<_>>()
            .join(" ");
        let cost = r.test_cost_per_1k.unwrap_or(r.dev_cost_per_1k);
        println!(
            "{:<22} {:<16} {:>3} {:<12} {:>8.3} {:>8} {:>11} {:<40} {models}",
            r.id,
            when,
            r.version,
            &r.dataset_sha256[..r.dataset_sha256.len().min(12)],
            r.dev_quality,
            r.test_quality.map(|q| format!("{q:.3}")).unwrap_or_else(|| "-".into()),
            eval::fmt_cost(cost),
            format!("{}{}", r.chosen, if r.meets_bar { "" } else { " (below bar)" }),
        );
    }
    Ok(())
}
