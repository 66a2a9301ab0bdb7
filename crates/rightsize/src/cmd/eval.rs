//! `rightsize eval TASK`: run every tier of the ladder alone over the task's data set, simulate
//! every cascade and threshold on the dev split, pick the cheapest configuration that meets the
//! quality bar, report it on the test split; `--gate` compares with the stored baseline,
//! `--apply` writes the chosen ladder (and router) as a new task version. With two or more
//! tiers it also trains the pre-generation router on the dev split, so router-only and
//! router + cascade are compared with cascade-only. Every run is stored in the store's
//! `eval_runs` (`--history` lists them) as well as in files.

mod compare;
mod history;
mod router;

use crate::cmd::tasks::DirArgs;
use anyhow::{bail, Context, Result};
use clap::Args;
use compare::Family;
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
    /// Write the chosen ladder and thresholds (and `[router]`) as a new version of the task file.
    #[arg(long)]
    pub apply: bool,
    /// Which configurations right-sizing may choose from.
    #[arg(long, value_enum, default_value_t = Family::Any)]
    pub strategy: Family,
    /// Do not train the pre-generation router (compare cascades only).
    #[arg(long)]
    pub no_router: bool,
    /// Store for the `eval_runs` record (SQLite file or postgres:// URL; default: the config's
    /// `store`, else `<cache>/rightsize.db`).
    #[arg(long)]
    pub store: Option<String>,
    /// List the stored eval runs of TASK instead of running one.
    #[arg(long)]
    pub history: bool,
    /// With --history: print JSON.
    #[arg(long)]
    pub json: bool,
    /// With --history: at most this many runs, newest first.
    #[arg(long, default_value_t = 20)]
    pub limit: i64,
    #[command(flatten)]
    pub dir: DirArgs,
}

pub fn eval(a: EvalArgs) -> Result<()> {
    let cfg = a.dir.config()?;
    let cache = supply::Cache::from_env();
    let store_at = a
        .store
        .clone()
        .or_else(|| cfg.store.clone())
        .unwrap_or_else(|| cache.root().join("rightsize.db").display().to_string());
    if a.history {
        return history::list(&store_at, &a.task, a.limit, a.json);
    }
    let dir = a.dir.dir(&cfg)?;
    let root = cache.root().to_owned();
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async move {
        let store = store::Store::open(&store_at)
            .await
            .with_context(|| format!("opening the store for eval_runs ({store_at})"))?;
        let state = server::Builder::new(cfg, cache).tasks(dir, None).build()?;
        let all_hashes = state.model_hashes.clone();
        let mesh = state.mesh.clone().context("tasks not loaded")?;
        let task = mesh.task(&a.task, a.version)?;
        let ds_path = a
            .dataset
            .clone()
            .or_else(|| task.dataset_path())
            .with_context(|| format!("task `{}` has no `dataset`; pass --dataset", a.task))?;
        let data = eval::Dataset::load(&ds_path)?;
        let split_cfg = eval::SplitConfig {
            test_fraction: a.test_fraction,
            ..Default::default()
        };
        data.check_no_leak(&split_cfg)?;
        let splits = data.split(&split_cfg);
        let bar = a.bar.or(task.spec.quality_bar).unwrap_or(0.9);
        let tiers: Vec<String> = task.tiers().map(|t| t.id()).collect();

        let bar_ui = indicatif::ProgressBar::new((data.items.len() * tiers.len()) as u64);
        bar_ui.set_style(
            indicatif::ProgressStyle::with_template("{msg:28} [{bar:30}] {pos}/{len} {elapsed}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        let t0 = std::time::Instant::now();
        let ui = bar_ui.clone();
        let progress = move |n: usize, tier: &str| {
            ui.set_message(tier.to_owned());
            ui.inc(n as u64);
        };
        let evaluation = mesh.evaluate_full(&task, &data, a.concurrency, &progress).await?;
        bar_ui.finish_and_clear();
        let secs = t0.elapsed().as_secs_f64();
        eprintln!(
            "ran {} items × {} tiers in {secs:.1} s ({:.2} tier-runs/s, concurrency {})",
            data.items.len(),
            tiers.len(),
            (data.items.len() * tiers.len()) as f64 / secs,
            a.concurrency
        );
        eprintln!("{}", evaluation.metric.line());
        let mut outcomes = evaluation.outcomes;

        let dev_ids: std::collections::HashSet<&str> = splits.dev.iter().map(|i| i.id.as_str()).collect();
        let routed = match (a.no_router, tiers.len()) {
            (true, _) | (_, 0..=1) => None,
            _ => match router::attach(&mesh, &task, &data, &dev_ids, &mut outcomes, &root).await {
                Ok(r) => Some(r),
                Err(e) if !task.spec.router.as_ref().is_some_and(|r| r.enabled) && a.strategy == Family::Any => {
                    eprintln!("router skipped: {e:#}");
                    None
                }
                Err(e) => return Err(e.context("training the router")),
            },
        };
        let dev = outcomes.retain_ids(|id| dev_ids.contains(id));
        let test = outcomes.retain_ids(|id| !dev_ids.contains(id));
        let points = eval::calibrate(&dev, &eval::CalibrateOptions::default())?;
        let qbar = eval::QualityBar::mean(bar);
        let mut report = eval::EvalReport::new(
            &task.spec.name,
            &ds_path.display().to_string(),
            tiers.clone(),
            points,
            &qbar,
        )?
        .with_judge(evaluation.judge);
        compare::restrict(&mut report, a.strategy, &qbar)?;
        if !test.items.is_empty() {
            report = report.with_test(&test, &eval::CiOptions::default())?;
        }
        let rows = compare::rows(&report, &test, &qbar)?;
        let note = routed
            .as_ref()
            .map(router::note)
            .unwrap_or_else(|| "No router was trained (--no-router, a one-tier ladder, or no router encoder).".into());
        println!("{}", report.to_text());
        println!("{}", compare::text(&rows));
        println!("{note}");

        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs();
        let task_dir = root.join("evals").join(&task.spec.name);
        let out = a
            .out
            .clone()
            .unwrap_or_else(|| task_dir.join(format!("v{}-{stamp}", task.spec.version)));
        std::fs::create_dir_all(&out)?;
        let mut models: Vec<String> = task
            .tiers()
            .filter_map(|t| t.model.clone().or_else(|| t.encoder.clone()))
            .collect();
        models.extend(routed.as_ref().map(|r| r.trained.router.meta.encoder.clone()));
        models.extend(match task.scoring()? {
            mesh::Scoring::Embedding { encoder, .. } => Some(encoder),
            mesh::Scoring::Judge { tier, .. } => tier.model.filter(|_| tier.kind == mesh::TierKind::Local),
            mesh::Scoring::Text(..) => None,
        });
        let hashes: std::collections::BTreeMap<String, String> = models
            .into_iter()
            .filter_map(|m| Some((m.clone(), all_hashes.get(&m)?.clone())))
            .collect();
        let mut json: serde_json::Value = serde_json::from_str(&report.to_json())?;
        json["task_version"] = task.spec.version.into();
        json["model_hashes"] = serde_json::to_value(&hashes)?;
        json["seconds"] = secs.into();
        json["metric"] = serde_json::to_value(&evaluation.metric)?;
        json["comparison"] = serde_json::to_value(&rows)?;
        json["router"] = routed.as_ref().map(router::summary).unwrap_or(serde_json::Value::Null);
        std::fs::write(out.join("report.json"), serde_json::to_string_pretty(&json)?)?;
        std::fs::write(out.join("report.html"), compare::html(&report, &rows, &note))?;
        std::fs::write(out.join("outcomes.json"), serde_json::to_string(&outcomes)?)?;
        eprintln!("report: {}", out.join("report.html").display());
        let rec = history::record(&task, &ds_path, hashes, &report, &json)?;
        store.record_eval(&rec).await?;
        eprintln!(
            "stored as {} in eval_runs (`rightsize eval {} --history`)",
            rec.id, task.spec.name
        );

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
            let next = mesh
                .registry
                .versions(&task.spec.name)
                .into_iter()
                .max()
                .unwrap_or(task.spec.version)
                + 1;
            let path = apply(&task, &report.selection.chosen.strategy, next)?;
            eprintln!(
                "wrote {} (version {next}: {})",
                path.display(),
                report.selection.chosen.label
            );
            if let (Some(r), false) = (
                &routed,
                matches!(report.selection.chosen.strategy, eval::Strategy::Cascade(_)),
            ) {
                let dir = router::save_for(&r.trained.router, &root, &task.spec.name, next)?;
                eprintln!("router for version {next}: {}", dir.display());
            }
        }
        if a.gate {
            let base = eval::RunSummary::load(&baseline)
                .with_context(|| format!("no baseline at {} (run with --save-baseline first)", baseline.display()))?;
            let verdict = eval::gate(&base, &summary, a.tolerance);
            for r in verdict.reasons.iter().chain(&verdict.notes) {
                eprintln!("gate: {r}");
            }
            if !verdict.passed {
                bail!(
                    "gate failed: quality {:.3} vs baseline {:.3} (tolerance {})",
                    summary.quality,
                    base.quality,
                    a.tolerance
                );
            }
            eprintln!(
                "gate passed: quality {:.3} vs baseline {:.3}",
                summary.quality, base.quality
            );
        }
        anyhow::Ok(())
    })
}

/// Write the chosen configuration as version N+1 next to the task file: its tiers and
/// thresholds (a tier's `min_margin` is dropped: the evaluation thresholded confidence only),
/// and `[router]` enabled exactly when the configuration routes.
fn apply(task: &mesh::Task, strategy: &eval::Strategy, version: i64) -> Result<PathBuf> {
    let all: Vec<String> = task.tiers().map(|t| t.id()).collect();
    let (c, routes) = match strategy {
        eval::Strategy::Cascade(c) => (c.clone(), false),
        eval::Strategy::RouterCascade(c) => (c.clone(), true),
        // The routed tier alone: every tier accepts what it answers (errors still escalate).
        eval::Strategy::Router => (
            eval::Cascade {
                thresholds: vec![0.0; all.len() - 1],
                tiers: all,
            },
            true,
        ),
    };
    let mut spec = task.spec.clone();
    let mut ladder = Vec::new();
    for (i, name) in c.tiers.iter().enumerate() {
        let t = task
            .spec
            .ladder
            .iter()
            .find(|t| &t.get_ref().id() == name)
            .with_context(|| format!("tier {name} not in the ladder"))?;
        let mut t = t.clone();
        t.get_mut().threshold = c.thresholds.get(i).copied().unwrap_or(0.0);
        t.get_mut().min_margin = None;
        ladder.push(t);
    }
    spec.ladder = ladder;
    spec.version = version;
    spec.router = match (routes, spec.router.take()) {
        (true, r) => Some(mesh::RouterSpec {
            enabled: true,
            ..r.unwrap_or_default()
        }),
        (false, r) => r.map(|r| mesh::RouterSpec { enabled: false, ..r }),
    };
    let path = task
        .file
        .with_file_name(format!("{}.v{}.toml", spec.name, spec.version));
    if path.exists() {
        bail!("{} already exists", path.display());
    }
    let text = format!(
        "# Written by `rightsize eval {} --apply` from version {}.\n{}",
        spec.name,
        task.spec.version,
        toml::to_string(&spec)?
    );
    std::fs::write(&path, text)?;
    if let Err(e) = mesh::Task::load(&path) {
        let _ = std::fs::remove_file(&path);
        bail!("the new version does not validate: {e}");
    }
    Ok(path)
}
