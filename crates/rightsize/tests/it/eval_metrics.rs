//! `[eval]` metrics through `rightsize eval` on real models: embedding similarity (MiniLM)
//! credits a paraphrased right answer that the default phrase metric misses; a judge
//! (Qwen2.5-0.5B) scores right answers above wrong ones and its agreement with the default
//! metric (percent and Cohen's kappa) is in report.json, the table and the HTML report; a bad
//! `[eval]` table is refused naming file, line and field.

use crate::common::rightsize;
use std::path::Path;

/// Writes `name` version 1 (`eval` as its `[eval]` table) and version 2 (no `[eval]`: the
/// default metric) over `items` `(id, inputs, expected, split)`.
fn write_task(dir: &Path, name: &str, body: &str, eval: &str, items: &[(String, serde_json::Value, &str, &str)]) {
    let data: String = items
        .iter()
        .map(|(id, input, expected, split)| {
            format!(
                "{}\n",
                serde_json::json!({"id": id, "input": input, "expected": expected, "split": split})
            )
        })
        .collect();
    std::fs::write(dir.join(format!("{name}.jsonl")), data).unwrap();
    let ladder = "[[ladder]]\nkind = \"local\"\nmodel = \"qwen2.5-0.5b\"\n";
    let head =
        |v: i64| format!("name = \"{name}\"\nversion = {v}\ndataset = \"{name}.jsonl\"\nquality_bar = 0.5\n{body}");
    std::fs::write(dir.join(format!("{name}.toml")), format!("{}{eval}\n{ladder}", head(1))).unwrap();
    std::fs::write(dir.join(format!("{name}.v2.toml")), format!("{}{ladder}", head(2))).unwrap();
}

/// Runs `rightsize eval` on one version: (stdout, report.json, per-item scores of the one tier).
fn eval(dir: &Path, name: &str, version: &str) -> (String, serde_json::Value, Vec<(String, f64)>) {
    let out = dir.join(format!("out-{name}-{version}"));
    let d = |p: &str| dir.join(p).display().to_string();
    let args = [
        "eval",
        name,
        "--version",
        version,
        "--tasks-dir",
        &d(""),
        "--out",
        &d(&format!("out-{name}-{version}")),
        "--store",
        &d("rs.db"),
        "--baseline",
        &d("baseline.json"),
        "--no-router",
    ];
    let (ok, stdout, err) = rightsize(&args);
    assert!(ok, "{err}");
    let report = serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    let outcomes: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("outcomes.json")).unwrap()).unwrap();
    let scores = outcomes["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["id"].as_str().unwrap().to_owned(),
                i["tiers"][0]["score"].as_f64().unwrap(),
            )
        })
        .collect();
    (stdout, report, scores)
}

#[test]
fn embedding_metric_credits_paraphrases() {
    let dir = tempfile::tempdir().unwrap();
    let q = |s: &str| serde_json::json!({ "question": s });
    let id = String::from;
    // Qwen2.5-0.5B answers "Paris is the capital of France." and "The largest planet in our
    // solar system is Jupiter.": right, but not the expected phrase. The last two expected
    // answers are wrong on purpose.
    let items = [
        (
            id("france"),
            q("What is the capital of France?"),
            "The French capital is Paris",
            "dev",
        ),
        (
            id("jupiter"),
            q("What is the largest planet in our solar system?"),
            "Jupiter is the biggest planet of the solar system",
            "test",
        ),
        (id("bees"), q("What do bees make?"), "Cows give us milk", "test"),
        (
            id("france-wrong"),
            q("What is the capital of France?"),
            "Berlin is the capital of Germany",
            "dev",
        ),
    ];
    let body = "inputs = [\"question\"]\nprompt = \"{{ question }} Answer in one short sentence.\"\n[output]\nkind = \"text\"\nmax_tokens = 16\n";
    write_task(dir.path(), "sa", body, "[eval]\nmetric = \"embedding\"\n", &items);
    let (_, report, embedding) = eval(dir.path(), "sa", "1");
    let (_, default_report, phrase) = eval(dir.path(), "sa", "2");
    let by_id = |s: &[(String, f64)]| {
        s.iter()
            .map(|(id, x)| format!("{id}={x}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert_eq!(
        by_id(&embedding),
        "france=1 jupiter=1 bees=0 france-wrong=0",
        "cosine ≥ 0.8 for the paraphrases only"
    );
    assert_eq!(
        by_id(&phrase),
        "france=0 jupiter=0 bees=0 france-wrong=0",
        "the default phrase metric misses the paraphrases"
    );
    let m = &report["metric"];
    assert_eq!(
        (m["name"].as_str(), m["encoder"].as_str(), m["threshold"].as_f64()),
        (Some("embedding"), Some("minilm-l6"), Some(0.8)),
        "{m}"
    );
    assert!(m["cost_usd"].as_f64().unwrap() > 0.0, "embedding is paid for: {m}");
    assert!(
        report["model_hashes"]["minilm-l6"]
            .as_str()
            .is_some_and(|h| h.len() == 64),
        "{}",
        report["model_hashes"]
    );
    assert!(report.get("judge").is_none());
    assert_eq!(default_report["metric"]["name"], "contains");
}

#[test]
fn judge_scores_answers_and_reports_agreement() {
    let dir = tempfile::tempdir().unwrap();
    // The tier copies the candidate answer, so the answers are known: right, wrong, right, ...
    let qa = [
        ("What is the capital of France?", "Paris", "Berlin"),
        ("How many legs does a spider have?", "eight", "three"),
        ("What colour is the sky on a clear day?", "blue", "green"),
    ];
    let mut items = Vec::new();
    for (i, (q, right, wrong)) in qa.iter().enumerate() {
        for (kind, answer) in [("right", right), ("wrong", wrong)] {
            let split = if i % 2 == 0 { "dev" } else { "test" };
            items.push((
                format!("{kind}{i}"),
                serde_json::json!({"question": q, "answer": answer}),
                *right,
                split,
            ));
        }
    }
    let body = "inputs = [\"question\", \"answer\"]\nprompt = \"Repeat exactly, and write nothing else: {{ answer }}\"\n[output]\nkind = \"text\"\nmax_tokens = 8\n";
    let rubric = "Question: {{ question }}\\nReference answer: {{ expected }}\\nStudent answer: {{ output }}\\n\\nIs the student answer correct? Answer yes or no.";
    write_task(
        dir.path(),
        "qa",
        body,
        &format!("[eval]\nmetric = \"judge\"\njudge = \"qwen2.5-0.5b\"\nrubric = \"{rubric}\"\n"),
        &items,
    );
    let (table, report, judged) = eval(dir.path(), "qa", "1");
    let (_, _, reference) = eval(dir.path(), "qa", "2");
    assert_eq!(
        reference.iter().map(|r| r.1).collect::<Vec<_>>(),
        [1.0, 0.0, 1.0, 0.0, 1.0, 0.0],
        "the tier copies the answers: {reference:?}"
    );
    for pair in judged.chunks(2) {
        assert!(
            pair[0].1 > pair[1].1,
            "the right answer is judged above the wrong one: {judged:?}"
        );
    }
    // Agreement and kappa from the judge's verdicts (P(yes) ≥ 0.5) against the default metric.
    let j: Vec<bool> = judged.iter().map(|x| x.1 >= 0.5).collect();
    let r: Vec<bool> = reference.iter().map(|x| x.1 >= 0.5).collect();
    let n = j.len() as f64;
    let po = j.iter().zip(&r).filter(|(a, b)| a == b).count() as f64 / n;
    let share = |v: &[bool]| v.iter().filter(|&&x| x).count() as f64 / n;
    let pe = share(&j) * share(&r) + (1.0 - share(&j)) * (1.0 - share(&r));
    let kappa = if (1.0 - pe).abs() < 1e-12 {
        1.0
    } else {
        (po - pe) / (1.0 - pe)
    };
    let block = &report["judge"];
    assert_eq!(
        (
            block["judge"].as_str(),
            block["reference"].as_str(),
            block["calls"].as_u64()
        ),
        (Some("local:qwen2.5-0.5b"), Some("contains"), Some(6)),
        "{block}"
    );
    let a = &block["agreement"];
    assert!(
        (a["agreement"].as_f64().unwrap() - po).abs() < 1e-9 && (a["kappa"].as_f64().unwrap() - kappa).abs() < 1e-9,
        "{a} vs {po} / {kappa}"
    );
    assert!(
        kappa > 0.0,
        "the judge agrees with the exact labels better than chance: {judged:?}"
    );
    let cost = block["cost_usd"].as_f64().unwrap();
    assert!(
        cost > 0.0 && report["metric"]["cost_usd"].as_f64() == Some(cost),
        "{block}"
    );
    assert!(
        table.contains(&format!(
            "judge local:qwen2.5-0.5b vs contains: agreement {:.1}%",
            po * 100.0
        )),
        "{table}"
    );
    let html = std::fs::read_to_string(dir.path().join("out-qa-1/report.html")).unwrap();
    assert!(
        html.contains("<p class=\"judge\">judge local:qwen2.5-0.5b vs contains"),
        "one line in the HTML report"
    );
}

#[test]
fn bad_eval_tables_name_file_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let task = "name = \"t\"\nversion = 1\ninputs = [\"q\"]\nprompt = \"{{ q }}\"\n[output]\nkind = \"text\"\n[[ladder]]\nkind = \"local\"\nmodel = \"smollm2-135m\"\n";
    for (eval, line, field) in [
        ("[eval]\nmetric = \"bleu\"\n", 12, "eval.metric"),
        (
            "[eval]\nmetric = \"judge\"\njudge = \"qwen2.5-1.5b\"\n",
            11,
            "eval.rubric",
        ),
        (
            "[eval]\nmetric = \"embedding\"\nembedding_threshold = 1.5\n",
            13,
            "eval.embedding_threshold",
        ),
    ] {
        std::fs::write(dir.path().join("t.toml"), format!("{task}\n{eval}")).unwrap();
        let (ok, _, err) = rightsize(&["tasks", "validate", "--tasks-dir", dir.path().to_str().unwrap()]);
        assert!(!ok, "{eval}");
        assert!(
            err.contains(&format!("t.toml:{line}: `{field}`")),
            "{field} at line {line}: {err}"
        );
    }
}
