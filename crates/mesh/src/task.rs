//! A task file: what the task asks, what shape its answer has, and the ladder of tiers that
//! may answer it. Parsing reports the file, the line and the field of every problem.

use crate::error::TaskError;
use crate::metric::{EvalSpec, Scoring};
use crate::tier_spec::{TierKind, TierSpec};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use toml::Spanned;

/// One version of a task, as written in its file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskSpec {
    pub name: String,
    pub version: i64,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub owner: String,
    /// Input variables the prompt template may use; a run must give exactly these.
    pub inputs: Vec<String>,
    /// Optional system message.
    #[serde(default)]
    pub system: Option<String>,
    /// minijinja template of the user message.
    pub prompt: String,
    pub output: OutputSpec,
    #[serde(default)]
    pub escalation: EscalationPolicy,
    /// Latency the task is expected to meet (reported against, not enforced; use a tier's
    /// `timeout_ms` to cut a tier off).
    #[serde(default)]
    pub latency_target_ms: Option<u64>,
    /// Labelled examples (JSONL): train the classifier tier, seed evaluation.
    #[serde(default)]
    pub examples: Option<PathBuf>,
    /// Evaluation data set (JSONL, see the `eval` crate) used by `rightsize eval`.
    #[serde(default)]
    pub dataset: Option<PathBuf>,
    /// Quality the task must reach on its data set (0..=1): right-sizing picks the cheapest
    /// configuration that meets it.
    #[serde(default)]
    pub quality_bar: Option<f64>,
    /// Input and output guardrails (`[guardrails]`: PII, injection, output checks).
    #[serde(default)]
    pub guardrails: guard::Guardrails,
    /// Pre-generation router (`[router]`): start each run at the tier a classifier on the
    /// input's embedding predicts (trained by `rightsize eval`; see `learned_router.rs`).
    #[serde(default)]
    pub router: Option<crate::learned_router::RouterSpec>,
    /// How `rightsize eval` scores answers (`[eval]`; default: per output kind, see `metric.rs`).
    #[serde(default)]
    pub eval: Option<EvalSpec>,
    /// Tiers from cheapest to dearest.
    pub ladder: Vec<Spanned<TierSpec>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputKind {
    Text,
    Label,
    Json,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputSpec {
    pub kind: OutputKind,
    /// `label`: the fixed label set.
    #[serde(default)]
    pub labels: Vec<String>,
    /// `json`: the JSON Schema, inline...
    #[serde(default)]
    pub schema: Option<serde_json::Value>,
    /// ...or in a file next to the task file.
    #[serde(default)]
    pub schema_file: Option<PathBuf>,
    /// Most tokens a decoder tier may generate.
    #[serde(default = "default_max_tokens")]
    pub max_tokens: usize,
    /// `json`: a field whose value must match a regex, checked after generation.
    #[serde(default)]
    pub validators: Vec<Validator>,
}

fn default_max_tokens() -> usize {
    128
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Validator {
    pub field: String,
    pub pattern: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum OnError {
    /// A tier that errors or times out hands over to the next tier.
    #[default]
    Next,
    /// A tier error fails the run.
    Fail,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum OnExhausted {
    /// When no tier reaches its threshold, answer with the most confident answer (flagged).
    #[default]
    Best,
    /// ...or fail the run.
    Fail,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EscalationPolicy {
    #[serde(default)]
    pub on_error: OnError,
    #[serde(default)]
    pub on_exhausted: OnExhausted,
    /// Text tasks: sample this many answers and use their agreement as the confidence.
    #[serde(default = "one")]
    pub samples: usize,
    /// Temperature of those samples.
    #[serde(default = "default_sample_temperature")]
    pub sample_temperature: f32,
    /// Text tasks: escalate when any token's logprob is below this.
    #[serde(default)]
    pub min_logprob: Option<f32>,
}

fn one() -> usize {
    1
}
fn default_sample_temperature() -> f32 {
    0.7
}

impl Default for EscalationPolicy {
    fn default() -> Self {
        Self {
            on_error: OnError::Next,
            on_exhausted: OnExhausted::Best,
            samples: 1,
            sample_temperature: 0.7,
            min_logprob: None,
        }
    }
}

/// A task loaded from disk and checked.
#[derive(Debug, Clone)]
pub struct Task {
    pub spec: TaskSpec,
    pub file: PathBuf,
    /// The JSON Schema of a `json` task (inline or from `schema_file`).
    pub schema: Option<serde_json::Value>,
}

impl Task {
    pub fn tiers(&self) -> impl Iterator<Item = &TierSpec> {
        self.spec.ladder.iter().map(|t| t.get_ref())
    }

    /// Parse and check one task file.
    pub fn load(file: &Path) -> Result<Task, TaskError> {
        let src = std::fs::read_to_string(file).map_err(|e| TaskError::Io {
            file: file.to_owned(),
            source: e,
        })?;
        Task::parse(&src, file)
    }

    /// Parse and check task text (`file` names it in errors and anchors relative paths).
    pub fn parse(src: &str, file: &Path) -> Result<Task, TaskError> {
        let spec: TaskSpec = toml::from_str(src).map_err(|e| {
            let line = e.span().map(|s| line_of(src, s.start));
            let field = named_field(e.message())
                .or_else(|| line.and_then(|l| key_on_line(src, l)))
                .unwrap_or_default();
            // Fields of `[eval]` are named with their table (`eval.metric`).
            let table = e
                .span()
                .and_then(|s| table_at(src, s.start))
                .filter(|t| *t == "eval" || t.starts_with("eval."));
            let field = match table {
                Some(t) if !field.starts_with(t) => format!("{t}.{field}"),
                _ => field,
            };
            TaskError::invalid(file, line, &field, e.message().trim())
        })?;
        let at = |field: &str| find_key(src, field, 0..src.len());
        let bad = |field: &str, msg: String| {
            TaskError::invalid(file, at(field.rsplit('.').next().unwrap_or(field)), field, &msg)
        };
        if spec.name.is_empty()
            || !spec
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(bad(
                "name",
                format!(
                    "`{}` must be non-empty and use only letters, digits, `-` and `_`",
                    spec.name
                ),
            ));
        }
        if spec.version < 1 {
            return Err(bad("version", "must be 1 or more".into()));
        }
        check_template(&spec).map_err(|m| bad("prompt", m))?;
        let dir = file.parent().unwrap_or(Path::new("."));
        let schema = check_output(&spec.output, dir).map_err(|(f, m)| bad(&format!("output.{f}"), m))?;
        check_escalation(&spec.escalation).map_err(|(f, m)| bad(&format!("escalation.{f}"), m))?;
        if spec.ladder.is_empty() {
            return Err(TaskError::invalid(
                file,
                None,
                "ladder",
                "needs at least one tier ([[ladder]])",
            ));
        }
        for (i, t) in spec.ladder.iter().enumerate() {
            if let Err((field, msg)) = t.get_ref().check(spec.output.kind, i + 1 == spec.ladder.len()) {
                let span = t.span();
                let line = find_key(src, &field, span.clone()).or(Some(line_of(src, span.start)));
                return Err(TaskError::invalid(file, line, &format!("ladder[{i}].{field}"), &msg));
            }
        }
        let rails_at = src.find("[guardrails]").unwrap_or(0);
        spec.guardrails.check().map_err(|(f, m)| {
            TaskError::invalid(
                file,
                find_key(src, f, rails_at..src.len()),
                &format!("guardrails.{f}"),
                &m,
            )
        })?;
        if let Some(r) = &spec.router {
            r.check(spec.ladder.len())
                .map_err(|(f, m)| bad(&format!("router.{f}"), m))?;
        }
        if let Some(ev) = &spec.eval {
            ev.scoring(spec.output.kind, &spec.inputs).map_err(|(f, m)| {
                let table = if f.starts_with("judge.") { "eval.judge" } else { "eval" };
                let (range, header) = table_range(src, table)
                    .or_else(|| table_range(src, "eval"))
                    .unwrap_or((0..src.len(), None));
                let line = find_key(src, &f, range).or(header).or_else(|| at(&f));
                TaskError::invalid(file, line, &format!("eval.{f}"), &m)
            })?;
        }
        if spec.quality_bar.is_some_and(|q| !(0.0..=1.0).contains(&q)) {
            return Err(bad("quality_bar", "must be between 0 and 1".into()));
        }
        if spec.output.kind != OutputKind::Label && spec.ladder.iter().any(|t| t.get_ref().kind == TierKind::Classifier)
        {
            return Err(TaskError::invalid(
                file,
                None,
                "ladder",
                "a classifier tier can only answer a `label` task",
            ));
        }
        if spec.ladder.iter().any(|t| t.get_ref().kind == TierKind::Classifier) && spec.examples.is_none() {
            return Err(bad(
                "examples",
                "a classifier tier trains on the task's `examples` file; set `examples`".into(),
            ));
        }
        // Last: only an otherwise valid task is "unavailable" for want of its data files.
        for (field, data) in [("examples", &spec.examples), ("dataset", &spec.dataset)] {
            if let Some(p) = data.as_ref().map(|p| dir.join(p)).filter(|p| !p.is_file()) {
                return Err(TaskError::MissingData {
                    file: file.to_owned(),
                    line: at(field),
                    field: field.into(),
                    missing: p,
                    name: spec.name.clone(),
                    version: spec.version,
                });
            }
        }
        Ok(Task {
            spec,
            file: file.to_owned(),
            schema,
        })
    }

    /// How answers are scored by `rightsize eval` (checked at load).
    pub fn scoring(&self) -> Result<Scoring, crate::MeshError> {
        match &self.spec.eval {
            Some(ev) => ev
                .scoring(self.spec.output.kind, &self.spec.inputs)
                .map_err(|(f, m)| crate::MeshError::BadInput(format!("eval.{f}: {m}"))),
            None => Ok(Scoring::default_for(self.spec.output.kind)),
        }
    }

    /// Path of the evaluation data set, resolved next to the task file.
    pub fn dataset_path(&self) -> Option<PathBuf> {
        self.beside(self.spec.dataset.as_ref())
    }

    /// Path of the examples file, resolved next to the task file.
    pub fn examples_path(&self) -> Option<PathBuf> {
        self.beside(self.spec.examples.as_ref())
    }

    /// A path from the task file, relative to the file's directory.
    fn beside(&self, p: Option<&PathBuf>) -> Option<PathBuf> {
        let dir = self.file.parent().unwrap_or(Path::new("."));
        p.map(|p| dir.join(p))
    }
}

fn check_template(spec: &TaskSpec) -> Result<(), String> {
    let listed = format!("listed in `inputs` ({})", spec.inputs.join(", "));
    for (what, text) in [("prompt", Some(&spec.prompt)), ("system", spec.system.as_ref())] {
        if let Some(text) = text {
            check_vars(what, text, &spec.inputs, &listed)?;
        }
    }
    Ok(())
}

/// A minijinja template that compiles and uses only `allowed` variables (`what` names it,
/// `allowed_desc` says what is allowed, in the message).
pub(crate) fn check_vars(what: &str, text: &str, allowed: &[String], allowed_desc: &str) -> Result<(), String> {
    let env = minijinja::Environment::new();
    let tpl = env
        .template_from_str(text)
        .map_err(|e| format!("{what} template: {e}"))?;
    let mut used: Vec<String> = tpl.undeclared_variables(false).into_iter().collect();
    used.sort();
    match used.iter().find(|v| !allowed.contains(v)) {
        Some(v) => Err(format!("{what} uses `{v}`, which is not {allowed_desc}")),
        None => Ok(()),
    }
}

/// The field a serde message names (`missing field `x``, `unknown field `x``).
pub(crate) fn named_field(message: &str) -> Option<String> {
    ["missing field `", "unknown field `"]
        .iter()
        .find_map(|p| message.split(p).nth(1)?.split('`').next().map(str::to_owned))
}

fn check_output(o: &OutputSpec, dir: &Path) -> Result<Option<serde_json::Value>, (String, String)> {
    if o.max_tokens == 0 || o.max_tokens > 8192 {
        return Err(("max_tokens".into(), "must be between 1 and 8192".into()));
    }
    match o.kind {
        OutputKind::Label => {
            if o.labels.len() < 2 {
                return Err(("labels".into(), "a label task needs at least two labels".into()));
            }
            let mut seen = std::collections::HashSet::new();
            if let Some(l) = o
                .labels
                .iter()
                .find(|l| l.trim().is_empty() || !seen.insert(l.as_str()))
            {
                return Err(("labels".into(), format!("label `{l}` is empty or repeated")));
            }
            Ok(None)
        }
        OutputKind::Json => {
            let schema = match (&o.schema, &o.schema_file) {
                (Some(s), None) => s.clone(),
                (None, Some(f)) => {
                    let p = dir.join(f);
                    let text = std::fs::read_to_string(&p)
                        .map_err(|e| ("schema_file".to_string(), format!("{}: {e}", p.display())))?;
                    serde_json::from_str(&text)
                        .map_err(|e| ("schema_file".to_string(), format!("{}: not JSON: {e}", p.display())))?
                }
                _ => {
                    return Err((
                        "schema".into(),
                        "a json task needs exactly one of `schema` or `schema_file`".into(),
                    ))
                }
            };
            jsonschema::validator_for(&schema)
                .map_err(|e| ("schema".to_string(), format!("not a valid JSON Schema: {e}")))?;
            for v in &o.validators {
                regex::Regex::new(&v.pattern)
                    .map_err(|e| ("validators".to_string(), format!("pattern for `{}`: {e}", v.field)))?;
            }
            Ok(Some(schema))
        }
        OutputKind::Text => Ok(None),
    }
}

fn check_escalation(p: &EscalationPolicy) -> Result<(), (String, String)> {
    if p.samples == 0 || p.samples > 16 {
        return Err(("samples".into(), "must be between 1 and 16".into()));
    }
    if !(0.0..=2.0).contains(&p.sample_temperature) {
        return Err(("sample_temperature".into(), "must be between 0 and 2".into()));
    }
    Ok(())
}

/// 1-based line of a byte offset.
pub(crate) fn line_of(src: &str, offset: usize) -> usize {
    src[..offset.min(src.len())].matches('\n').count() + 1
}

fn key_on_line(src: &str, line: usize) -> Option<String> {
    let text = src.lines().nth(line - 1)?;
    let key = text
        .split('=')
        .next()?
        .trim()
        .trim_matches(|c| c == '[' || c == ']' || c == '"');
    (!key.is_empty() && !key.contains(' ')).then(|| key.to_owned())
}

/// The table whose header (`[name]` or `[[name]]`) is the last one at or before `offset`.
fn table_at(src: &str, offset: usize) -> Option<&str> {
    let before = src.get(..offset).unwrap_or(src);
    let (upto, rest) = src.split_at(before.rfind('\n').map_or(0, |i| i + 1));
    upto.lines().chain(rest.lines().take(1)).filter_map(header).last()
}

fn header(line: &str) -> Option<&str> {
    let t = line.trim();
    t.starts_with('[')
        .then(|| t.split(']').next().unwrap_or("").trim_start_matches('[').trim())
}

/// Byte range of the table `[name]` (header to the next header) and its header's line.
fn table_range(src: &str, name: &str) -> Option<(std::ops::Range<usize>, Option<usize>)> {
    let mut offset = 0;
    let mut start = None;
    for l in src.split_inclusive('\n') {
        match (header(l), start) {
            (Some(h), None) if h == name => start = Some(offset),
            (Some(_), Some(s)) => return Some((s..offset, Some(line_of(src, s)))),
            _ => {}
        }
        offset += l.len();
    }
    start.map(|s| (s..src.len(), Some(line_of(src, s))))
}

/// Line of the first `key = ...` inside `range`.
fn find_key(src: &str, key: &str, range: std::ops::Range<usize>) -> Option<usize> {
    let key = key.rsplit('.').next().unwrap_or(key);
    let mut offset = range.start;
    for l in src[range.clone()].split_inclusive('\n') {
        let t = l.trim_start();
        if t.strip_prefix(key)
            .is_some_and(|rest| rest.trim_start().starts_with('='))
        {
            return Some(line_of(src, offset));
        }
        offset += l.len();
    }
    None
}
