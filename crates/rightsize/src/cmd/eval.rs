//! `rightsize eval TASK`: run every tier of the ladder alone over the task's data set, simulate
//! every cascade and threshold on the dev split, pick the cheapest configuration that meets the
//! quality bar, report it on the test split; `--gate` compares with the stored baseline,
//! `--apply` writes the chosen ladder as a new task version.

use crate::cmd::tasks::DirArgs;
use anyhow::{bail, Context, Result};
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct EvalArgs {
    pub task: String,
    #[arg(long)]
    pub version: Option<i64>,
    /// Data set (JSONL); default: the task's `dataset`.
    #[arg(long)]
    pub dataset: Option<PathBuf>,
    /// Quality bar (0..1); default: the task's `quality_bar`, else 0.9.
    #[arg(long)]
    pub bar: Option<f64>,
    /// Items in flight per tier (the engine batches them).
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// Share of items held out as the test split (items without an explicit split).
    #[arg(long, default_value_t = 0.5)]
    pub test_fraction: f64,
    /// Where to write report.json, report.html and outcomes.json (default: <cache>/evals/TASK/vN-<time>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Compare with the stored baseline; exit non-zero when quality drops by more than --tolerance.
    #[arg(long)]
    pub gate: bool,
    #[arg(long, default_value_t = 0.02)]
    pub tolerance: f64,
    /// Store this run as the task's baseline.
    #[arg(long)]
    pub save_baseline: bool,
    /// Baseline file (default: <cache>/evals/TASK/baseline.json).
    #[arg(long)]
    pub baseline: Option<PathBuf>,
    /// Write the chosen ladder and thresholds as a new version of the task file.
    #[arg(long)]
    pub apply: bool,
    #[command(flatten)]
    pub dir: DirArgs,
}

pub fn eval(a: EvalArgs) -> Result<()> {
    let cfg = a.dir.config()?;
    let dir = a.dir.dir(&cfg)?;
    let cache = supply::Cache::from_env();
    let root = cache.root().to_owned();
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async move {
        let mut state = server::state(cfg, cache, None)?;
        server::attach_tasks(&mut state, &dir, None, root.clone())?;
        let mesh = state.mesh.clone().context("tasks not loaded")?;
        let task = mesh.task(&a.task, a.version)?;
        let ds_path = a.dataset.clone().or_else(|| task.dataset_path()).with_context(|| format!("task `{}` has no `dataset`; pass --dataset", a.task))?;
        let data = eval::Dataset::load(&ds_path)?;
        let split_cfg = eval::SplitConfig { test_fraction: a.test_fraction, ..Default::default() };
        data.check_no_leak(&split_cfg)?;
        let splits = data.split(&split_cfg);
        let bar = a.bar.or(task.spec.quality_bar).unwrap_or(0.9);
        let tiers: Vec<String> = task.tiers().map(|t| t.id()).collect();

        let bar_ui = indicatif::ProgressBar::new((data.items.len() * tiers.len()) as u64);
        bar_ui.set_style(indicatif::ProgressStyle::with_template("{msg:28} [{bar:30}] {pos}/{len} {elapsed}").unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()));
        let t0 = std::time::Instant::now();
        let ui = bar_ui.clone();
        let progress = move |n: usize, tier: &str| {
            ui.set_message(tier.to_owned());
            ui.inc(n as u64);
        };
        let outcomes = mesh.evaluate(&task, &data, a.concurrency, &progress).await?;
        bar_ui.finish_and_clear();
        let secs = t0.elapsed().as_secs_f64();
        eprintln!("ran {} items × {} tiers in {secs:.1} s ({:.2} tier-runs/s, concurrency {})", data.items.len(), tiers.len(), (data.items.len() * tiers.len()) as f64 / secs, a.concurrency);

        let dev_ids: std::collections::HashSet<&str> = splits.dev.iter().map(|i| i.id.as_str()).collect();
        let dev = outcomes.retain_ids(|id| dev_ids.contains(id));
        let test = outcomes.retain_ids(|id| !dev_ids.contains(id));
        let points = eval::calibrate(&dev, &eval::CalibrateOptions::default())?;
        let mut report = eval::EvalReport::new(&task.spec.name, &ds_path.display().to_string(), tiers.clone(), points, &eval::QualityBar::mean(bar))?;
        if !test.items.is_empty() {
            report = report.with_test(&test, &eval::CiOptions::default())?;
        }
        println!("{}", report.to_text());

        let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs();
        let task_dir = root.join("evals").join(&task.spec.name);
        let out = a.out.clone().unwrap_or_else(|| task_dir.join(format!("v{}-{stamp}", task.spec.version)));
        std::fs::create_dir_all(&out)?;
        let hashes = model_hashes(&root, &task);
        let mut json: serde_json::Value = serde_json::from_str(&report.to_json())?;
        json["task_version"] = task.spec.version.into();
        json["model_hashes"] = serde_json::to_value(&hashes)?;
        json["seconds"] = secs.into();
        std::fs::write(out.join("report.json"), serde_json::to_string_pretty(&json)?)?;
        std::fs::write(out.join("report.html"), eval::html_report(&report))?;
        std::fs::write(out.join("outcomes.json"), serde_json::to_string(&outcomes)?)?;
        eprintln!("report: {}", out.join("report.html").display());

        let baseline = a.baseline.clone().unwrap_or_else(|| task_dir.join("baseline.json"));
        let summary = report.summary();
        if a.save_baseline || (!baseline.exists() && !a.gate) {
            if let Some(d) = baseline.parent() {
                std::fs::create_dir_all(d)?;
            }
            summary.save(&baseline)?;
            eprintln!("baseline saved: {}", baseline.display());
        }
        if a.apply {
            let next = mesh.registry.versions(&task.spec.name).into_iter().max().unwrap_or(task.spec.version) + 1;
            let path = apply(&task, &report.selection.chosen.strategy, next)?;
            eprintln!("wrote {} (version {next}: {})", path.display(), report.selection.chosen.label);
        }
        if a.gate {
            let base = eval::RunSummary::load(&baseline).with_context(|| format!("no baseline at {} (run with --save-baseline first)", baseline.display()))?;
            let verdict = eval::gate(&base, &summary, a.tolerance);
            for r in verdict.reasons.iter().chain(&verdict.notes) {
                eprintln!("gate: {r}");
            }
            if !verdict.passed {
                bail!("gate failed: quality {:.3} vs baseline {:.3} (tolerance {})", summary.quality, base.quality, a.tolerance);
            }
            eprintln!("gate passed: quality {:.3} vs baseline {:.3}", summary.quality, base.quality);
        }
        anyhow::Ok(())
    })
}

/// sha256 of each model file the ladder uses (from the cache's verified markers).
fn model_hashes(root: &std::path::Path, task: &mesh::Task) -> std::collections::BTreeMap<String, String> {
    task.tiers()
        .filter_map(|t| t.model.clone().or_else(|| t.encoder.clone()))
        .filter_map(|id| {
            let dir = root.join("models").join(&id);
            let marker = std::fs::read_dir(&dir).ok()?.flatten().map(|e| e.path()).find(|p| p.extension().is_some_and(|x| x == "sha256"))?;
            Some((id, std::fs::read_to_string(marker).ok()?.split_whitespace().next()?.to_owned()))
        })
        .collect()
}

/// Write the chosen configuration as version N+1 next to the task file.
fn apply(task: &mesh::Task, strategy: &eval::Strategy, version: i64) -> Result<PathBuf> {
    let eval::Strategy::Cascade(c) = strategy else { bail!("the chosen configuration uses a router; --apply writes cascades only") };
    let mut spec = task.spec.clone();
    let mut ladder = Vec::new();
    for (i, name) in c.tiers.iter().enumerate() {
        let t = task.spec.ladder.iter().find(|t| &t.get_ref().id() == name).with_context(|| format!("tier {name} not in the ladder"))?;
        let mut t = t.clone();
        t.get_mut().threshold = c.thresholds.get(i).copied().unwrap_or(0.0);
        ladder.push(t);
    }
    spec.ladder = ladder;
    spec.version = version;
    let path = task.file.with_file_name(format!("{}.v{}.toml", spec.name, spec.version));
    if path.exists() {
        bail!("{} already exists", path.display());
    }
    let text = format!("# Written by `rightsize eval {} --apply` from version {}.\n{}", spec.name, task.spec.version, toml::to_string(&spec)?);
    std::fs::write(&path, text)?;
    if let Err(e) = mesh::Task::load(&path) {
        let _ = std::fs::remove_file(&path);
        bail!("the new version does not validate: {e}");
    }
    Ok(path)
}
