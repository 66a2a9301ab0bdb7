//! The `bbc-topic` task on the real BBC News corpus (pulled by `scripts/setup.sh`): the builder
//! (`rightsize data bbc-topic`) is deterministic, balanced and keeps training examples, dev and
//! test apart; and the shipped task's classifier tier, trained on those examples with the real
//! MiniLM, files the dev split's stories correctly through `rightsize eval`.

use crate::common::rightsize_env as rightsize;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

const LABELS: [&str; 5] = ["business", "entertainment", "politics", "sports", "tech"];

/// Build the task's files into `dir`; the corpus must have been pulled.
fn build(dir: &Path) -> String {
    let (ok, _, err) = rightsize(&["data", "bbc-topic", "--out", dir.to_str().unwrap()], &[]);
    assert!(
        ok,
        "the builder failed (is the corpus pulled? `rightsize pull bbc-news`, which scripts/setup.sh runs): {err}"
    );
    err
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn headline(article: &str) -> String {
    article.lines().next().unwrap().to_lowercase()
}

#[test]
fn builder_is_deterministic_balanced_and_leak_free() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    build(&a);
    build(&b);
    for f in ["bbc-topic.eval.jsonl", "bbc-topic.examples.jsonl"] {
        assert_eq!(read(&a.join(f)), read(&b.join(f)), "{f} differs between two runs");
    }
    // A third run over the same corpus and parameters leaves the files alone.
    assert!(build(&a).contains("up to date"));

    let data = eval::Dataset::load(&a.join("bbc-topic.eval.jsonl")).unwrap();
    assert_eq!(data.items.len(), 200);
    let mut per: HashMap<(String, eval::Split), usize> = HashMap::new();
    let mut split_of: BTreeMap<String, eval::Split> = BTreeMap::new();
    for it in &data.items {
        let split = it.split.expect("every item has an explicit split");
        *per.entry((it.expected.as_text(), split)).or_default() += 1;
        let text = &it.input["article"];
        assert!(
            text.chars().count() <= 300 && text.contains('\n'),
            "headline + start, cut: {text:?}"
        );
        let prev = split_of.insert(headline(text), split);
        assert!(prev.is_none(), "a headline appears twice in the eval set: {text:?}");
    }
    for l in LABELS {
        for s in [eval::Split::Dev, eval::Split::Test] {
            assert_eq!(per.get(&(l.to_string(), s)), Some(&20), "{l} {s:?}: {per:?}");
        }
    }
    data.check_no_leak(&eval::SplitConfig::default()).unwrap();

    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    let eval_inputs: HashSet<String> = data.items.iter().map(|i| i.normalized_input()).collect();
    for line in read(&a.join("bbc-topic.examples.jsonl")).lines() {
        let ex: mesh::examples::Example = serde_json::from_str(line).unwrap();
        *counts.entry(ex.expected.as_str().unwrap().to_owned()).or_default() += 1;
        let as_item = eval::Item {
            id: "x".into(),
            input: ex.input.clone(),
            expected: eval::Expected::Text(String::new()),
            split: None,
        };
        assert!(
            !eval_inputs.contains(&as_item.normalized_input()),
            "example shared with the eval set: {:?}",
            ex.input
        );
        assert!(
            !split_of.contains_key(&headline(&ex.input["article"])),
            "example's story is in the eval set: {:?}",
            ex.input
        );
    }
    assert_eq!(
        counts,
        LABELS.iter().map(|l| (l.to_string(), 32)).collect::<BTreeMap<_, _>>()
    );
}

#[test]
fn builder_says_how_to_get_the_corpus() {
    let empty = tempfile::tempdir().unwrap();
    let out = empty.path().join("out");
    let (ok, _, err) = rightsize(
        &["data", "bbc-topic", "--out", out.to_str().unwrap()],
        &[("RIGHTSIZE_CACHE", empty.path())],
    );
    assert!(!ok);
    assert!(err.contains("rightsize pull bbc-news"), "{err}");
    assert!(!out.exists(), "nothing written without a corpus");
}

#[test]
fn classifier_tier_files_dev_stories() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    build(&d.join("data"));
    // The shipped task, cut down to its first tier (the classifier) so that eval runs only it.
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tasks/bbc-topic.toml");
    let mut task: toml::Table = read(&shipped).parse().unwrap();
    let ladder = task["ladder"].as_array().unwrap();
    assert_eq!(ladder[0]["kind"].as_str(), Some("classifier"));
    task.insert("ladder".into(), toml::Value::Array(vec![ladder[0].clone()]));
    std::fs::write(d.join("bbc-topic.toml"), toml::to_string(&task).unwrap()).unwrap();

    let (out, baseline) = (d.join("out"), d.join("baseline.json"));
    let args = [
        "eval",
        "bbc-topic",
        "--tasks-dir",
        d.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--baseline",
        baseline.to_str().unwrap(),
    ];
    let (ok, table, err) = rightsize(&args, &[]);
    assert!(ok, "{err}");
    assert!(table.contains("classifier:minilm-l6"), "{table}");
    assert!(out.join("report.json").is_file() && out.join("report.html").is_file());

    let data = eval::Dataset::load(&d.join("data/bbc-topic.eval.jsonl")).unwrap();
    let dev: HashSet<&str> = data
        .items
        .iter()
        .filter(|i| i.split == Some(eval::Split::Dev))
        .map(|i| i.id.as_str())
        .collect();
    let outcomes: serde_json::Value = serde_json::from_str(&read(&out.join("outcomes.json"))).unwrap();
    let scores: Vec<f64> = outcomes["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|it| dev.contains(it["id"].as_str().unwrap()))
        .map(|it| it["tiers"][0]["score"].as_f64().unwrap())
        .collect();
    assert_eq!(scores.len(), 100);
    let acc = scores.iter().sum::<f64>() / scores.len() as f64;
    eprintln!("classifier accuracy on the dev split: {acc:.3}");
    // Five balanced labels: chance is 0.2; a head on 160 MiniLM embeddings must do far better.
    assert!(acc >= 0.8, "classifier accuracy on dev {acc:.3} < 0.8");
}
