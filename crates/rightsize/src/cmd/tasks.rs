//! `rightsize tasks list|show|validate`, `rightsize task NAME --input k=v`, `rightsize stats`.

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct TasksArgs {
    #[command(subcommand)]
    pub cmd: TasksCmd,
}

#[derive(Subcommand, Debug)]
pub enum TasksCmd {
    /// List the tasks (newest version of each).
    List(DirArgs),
    /// Show one task's file as parsed.
    Show {
        name: String,
        #[arg(long)]
        version: Option<i64>,
        #[command(flatten)]
        dir: DirArgs,
    },
    /// Check task files (a directory, or the given files); every error names file, line and field.
    Validate {
        files: Vec<PathBuf>,
        #[command(flatten)]
        dir: DirArgs,
    },
}

#[derive(Args, Debug, Clone)]
pub struct DirArgs {
    /// Tasks directory (default: the config's `tasks_dir`, else ./tasks).
    #[arg(long)]
    pub tasks_dir: Option<PathBuf>,
    /// Server config (TOML) whose models and tasks_dir to use.
    #[arg(long)]
    pub config: Option<PathBuf>,
}

impl DirArgs {
    pub fn config(&self) -> Result<server::ServerConfig> {
        Ok(server::ServerConfig::load(self.config.as_deref())?)
    }
    pub fn dir(&self, cfg: &server::ServerConfig) -> Result<PathBuf> {
        self.tasks_dir
            .clone()
            .or_else(|| cfg.tasks_dir())
            .context("no tasks directory: pass --tasks-dir or set `tasks_dir`")
    }
    fn registry(&self) -> Result<mesh::Registry> {
        let dir = self.dir(&self.config()?)?;
        mesh::Registry::load_dir(&dir)
            .map_err(|errs| anyhow::anyhow!(errs.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n")))
    }
}

pub fn tasks(a: TasksArgs) -> Result<()> {
    match a.cmd {
        TasksCmd::List(d) => {
            let reg = d.registry()?;
            println!(
                "{:<20} {:>7} {:<6} {:<60} DESCRIPTION",
                "TASK", "VERSION", "OUTPUT", "LADDER"
            );
            for t in reg.latest() {
                let ladder = t.tiers().map(|x| x.id()).collect::<Vec<_>>().join(" → ");
                println!(
                    "{:<20} {:>7} {:<6} {:<60} {}",
                    t.spec.name,
                    t.spec.version,
                    format!("{:?}", t.spec.output.kind).to_lowercase(),
                    ladder,
                    t.spec.description
                );
            }
            for u in reg.unavailable() {
                println!("{:<20} {:>7} unavailable: {}", u.name, u.version, u.reason);
            }
            Ok(())
        }
        TasksCmd::Show { name, version, dir } => {
            let reg = dir.registry()?;
            if let (None, Some(u)) = (reg.get(&name, version), reg.why_unavailable(&name, version)) {
                bail!("task `{name}` is unavailable: {}", u.reason);
            }
            let t = reg.get(&name, version).with_context(|| {
                format!(
                    "no task `{name}`{}",
                    version.map(|v| format!(" version {v}")).unwrap_or_default()
                )
            })?;
            println!("# {}", t.file.display());
            println!("{}", serde_json::to_string_pretty(&t.spec)?);
            Ok(())
        }
        TasksCmd::Validate { files, dir } => {
            let errors: Vec<String> = if files.is_empty() {
                let d = dir.dir(&dir.config()?)?;
                match mesh::Registry::load_dir(&d) {
                    Ok(reg) => {
                        println!("{}: {} task(s) OK", d.display(), reg.latest().count());
                        for u in reg.unavailable() {
                            println!("{}: valid, but unavailable here: {}", u.file.display(), u.reason);
                        }
                        Vec::new()
                    }
                    Err(errs) => errs.iter().map(|e| e.to_string()).collect(),
                }
            } else {
                files
                    .iter()
                    .filter_map(|f| match mesh::Task::load(f) {
                        Ok(t) => {
                            println!("{}: OK ({} v{})", f.display(), t.spec.name, t.spec.version);
                            None
                        }
                        Err(e) => Some(e.to_string()),
                    })
                    .collect()
            };
            if errors.is_empty() {
                return Ok(());
            }
            for e in &errors {
                eprintln!("{e}");
            }
            bail!("{} invalid task file(s)", errors.len())
        }
    }
}

#[derive(Args, Debug)]
pub struct TaskArgs {
    pub name: String,
    /// An input variable, `name=value` (repeat for each input; `name=@file` reads a file).
    #[arg(long = "input", short = 'i')]
    pub inputs: Vec<String>,
    #[arg(long)]
    pub version: Option<i64>,
    /// Print the whole answer with its trace as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub dir: DirArgs,
}

fn parse_inputs(raw: &[String]) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for r in raw {
        let (k, v) = r
            .split_once('=')
            .with_context(|| format!("--input `{r}` is not name=value"))?;
        let v = match v.strip_prefix('@') {
            Some(path) => std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?,
            None => v.to_owned(),
        };
        out.insert(k.to_owned(), v);
    }
    Ok(out)
}

/// Run a task in-process over the configured models; the run is recorded in the store.
pub fn task(a: TaskArgs) -> Result<()> {
    let inputs = parse_inputs(&a.inputs)?;
    let cfg = a.dir.config()?;
    let dir = a.dir.dir(&cfg)?;
    let cache = supply::Cache::from_env();
    let store_at = cfg
        .store
        .clone()
        .unwrap_or_else(|| cache.root().join("rightsize.db").display().to_string());
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async move {
        let store = store::Store::open(&store_at).await?;
        let state = server::Builder::new(cfg, cache).tasks(dir, Some(store)).build()?;
        let mesh = state.mesh.clone().context("tasks not loaded")?;
        let answer = mesh
            .run(
                &a.name,
                &inputs,
                mesh::RunOptions {
                    version: a.version,
                    ..Default::default()
                },
            )
            .await?;
        if a.json {
            println!("{}", serde_json::to_string_pretty(&answer)?);
            return Ok(());
        }
        let out = match &answer.output {
            serde_json::Value::String(s) => s.clone(),
            v => serde_json::to_string_pretty(v)?,
        };
        println!("{out}");
        eprintln!();
        eprintln!(
            "{:<28} {:>10} {:>9} {:>9} {:>11}  RESULT",
            "TIER", "CONFIDENCE", "THRESHOLD", "MS", "COST USD"
        );
        for t in &answer.tiers {
            let result = match (&t.error, t.accepted) {
                (Some(e), _) => format!("error: {e}"),
                (None, true) => "accepted".into(),
                (None, false) => "escalated".into(),
            };
            let conf = t.confidence.map(|c| format!("{c:.3}")).unwrap_or_else(|| "-".into());
            eprintln!(
                "{:<28} {:>10} {:>9.2} {:>9.0} {:>11.8}  {result}",
                t.tier, conf, t.threshold, t.latency_ms, t.cost_usd
            );
        }
        eprintln!(
            "answered by {} in {:.0} ms, cost ${:.8}{}",
            answer.tier,
            answer.latency_ms,
            answer.cost_usd,
            if answer.accepted {
                ""
            } else {
                " (no tier reached its threshold: most confident answer)"
            }
        );
        anyhow::Ok(())
    })
}

#[derive(Args, Debug)]
pub struct StatsArgs {
    /// One task (default: all).
    #[arg(long)]
    pub task: Option<String>,
    /// Days back from now.
    #[arg(long, default_value_t = 30)]
    pub days: i64,
    /// JSON: `{"days": [...], "shadow": [...]}`.
    #[arg(long)]
    pub json: bool,
    /// Store (SQLite file or postgres:// URL; default: the config's `store`, else `<cache>/rightsize.db`).
    #[arg(long)]
    pub store: Option<String>,
    /// Server config whose `[shadow]` drift rule (window, min_samples, min_agreement) to apply.
    #[arg(long)]
    pub config: Option<PathBuf>,
}

pub fn stats(a: StatsArgs) -> Result<()> {
    let cfg = server::ServerConfig::load(a.config.as_deref())?;
    let cache = supply::Cache::from_env();
    let at = a
        .store
        .clone()
        .or(cfg.store.clone())
        .unwrap_or_else(|| cache.root().join("rightsize.db").display().to_string());
    let rule = cfg.shadow.rule();
    let rt = tokio::runtime::Runtime::new()?;
    let (rows, drift) = rt.block_on(async {
        let store = store::Store::open(&at).await?;
        let since = store::now_ms() - a.days * 86_400_000;
        let rows = store.run_stats(a.task.as_deref(), since).await?;
        let tasks = match &a.task {
            Some(t) => vec![t.clone()],
            None => store.drift_tasks().await?,
        };
        let mut drift = Vec::new();
        for t in tasks {
            let d = store.drift(&t, since, &rule).await?;
            if d.samples > 0 || d.reeval.is_some() {
                drift.push(d);
            }
        }
        anyhow::Ok((rows, drift))
    })?;
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({ "days": rows, "shadow": drift }))?
        );
        return Ok(());
    }
    println!(
        "{:<20} {:<10} {:>6} {:>14} {:>9} {:>9} {:>10} {:>7} {:>8}  BY TIER",
        "TASK", "DAY", "RUNS", "COST/RUN USD", "P50 MS", "P95 MS", "ESCALATED", "ERRORS", "BLOCKED"
    );
    let mut guarded = Vec::new();
    for r in &rows {
        let tiers = r
            .by_tier
            .iter()
            .map(|(t, n)| format!("{t}={n}"))
            .collect::<Vec<_>>()
            .join(" ");
        println!(
            "{:<20} {:<10} {:>6} {:>14.8} {:>9.0} {:>9.0} {:>9.1}% {:>6.1}% {:>8}  {tiers}",
            r.task,
            r.day,
            r.runs,
            r.cost_per_run_usd,
            r.p50_latency_ms,
            r.p95_latency_ms,
            r.escalation_rate * 100.0,
            r.error_rate * 100.0,
            r.blocked
        );
        if !r.guard.is_empty() {
            guarded.push((
                r.task.clone(),
                r.day.clone(),
                r.guard
                    .iter()
                    .map(|(k, n)| format!("{k}={n}"))
                    .collect::<Vec<_>>()
                    .join(" "),
            ));
        }
    }
    if !guarded.is_empty() {
        println!();
        println!("{:<20} {:<10}  GUARDRAILS (kinds and counts)", "TASK", "DAY");
        for (task, day, g) in guarded {
            println!("{task:<20} {day:<10}  {g}");
        }
    }
    if drift.is_empty() {
        return Ok(());
    }
    let pct = |x: Option<f64>| x.map(|v| format!("{:.1}%", v * 100.0)).unwrap_or_else(|| "-".into());
    println!();
    println!(
        "{:<20} {:<10} {:>8} {:>7} {:>10}  SHADOW (agreement with the top tier)",
        "TASK", "DAY", "SAMPLES", "ERRORS", "AGREEMENT"
    );
    for d in &drift {
        for day in &d.days {
            println!(
                "{:<20} {:<10} {:>8} {:>7} {:>10}",
                d.task,
                day.day,
                day.samples,
                day.errors,
                pct(day.agreement)
            );
        }
    }
    println!();
    for d in &drift {
        let rolling = format!(
            "rolling {} over {} of {} samples (alert below {:.1}%)",
            pct(d.rolling_agreement),
            d.rolling_samples,
            d.window,
            d.min_agreement * 100.0
        );
        let reeval = d
            .reeval
            .as_ref()
            .map(|r| format!("; re-eval v{} quality {:.3} on {} items", r.version, r.quality, r.n))
            .unwrap_or_default();
        let state = if d.drift_alert {
            format!("DRIFT ALERT: {}", d.reasons.join("; "))
        } else {
            "no drift".into()
        };
        println!("{:<20} {rolling}{reeval} — {state}", d.task);
    }
    Ok(())
}
