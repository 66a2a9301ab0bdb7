//! `[eval]` in task files: good tables resolve to a scoring, bad ones name file, line and
//! `eval.field`.

use super::*;
use crate::{Task, TaskError};
use std::path::Path;

const TASK: &str = "name = \"qa\"\nversion = 1\ninputs = [\"question\"]\nprompt = \"{{ question }}\"\n[output]\nkind = \"text\"\n[[ladder]]\nkind = \"local\"\nmodel = \"smollm2-135m\"\n";

fn task(eval: &str) -> Result<Task, TaskError> {
    Task::parse(&format!("{TASK}{eval}"), Path::new("tasks/qa.toml"))
}

/// `(line, field, message)` of the error, checking it names the file.
fn err(eval: &str) -> (Option<usize>, String, String) {
    match task(eval) {
        Err(e @ TaskError::Invalid { .. }) => {
            assert!(e.to_string().starts_with("tasks/qa.toml:"), "{e}");
            let TaskError::Invalid {
                line, field, message, ..
            } = e
            else {
                unreachable!()
            };
            (line, field, message)
        }
        other => panic!("expected an invalid-task error, got {other:?}"),
    }
}

/// 1-based line of `needle` in the whole file.
fn line(eval: &str, needle: &str) -> Option<usize> {
    let src = format!("{TASK}{eval}");
    src.lines().position(|l| l.contains(needle)).map(|i| i + 1)
}

#[test]
fn defaults_follow_the_output_kind() {
    let t = task("").unwrap();
    assert!(matches!(
        t.scoring().unwrap(),
        Scoring::Text(MetricName::Contains, Metric::Contains)
    ));
    assert_eq!(MetricName::default_for(OutputKind::Label), MetricName::Exact);
    assert_eq!(MetricName::default_for(OutputKind::Json), MetricName::JsonF1);
    let t = task("[eval]\nmetric = \"numeric\"\nabs_tolerance = 0.5\n").unwrap();
    assert!(
        matches!(t.scoring().unwrap(), Scoring::Text(MetricName::Numeric, Metric::Numeric { tol }) if tol.abs == 0.5)
    );
}

#[test]
fn embedding_and_judge_resolve() {
    let t = task("[eval]\nmetric = \"embedding\"\n").unwrap();
    assert!(
        matches!(t.scoring().unwrap(), Scoring::Embedding { encoder, threshold } if encoder == "minilm-l6" && threshold == 0.8)
    );
    let t = task("[eval]\nmetric = \"judge\"\njudge = \"qwen2.5-0.5b\"\nrubric = \"Q: {{ question }} A: {{ output }} (ref {{ expected }})\"\n").unwrap();
    assert!(matches!(t.scoring().unwrap(), Scoring::Judge { tier, .. } if tier.id() == "local:qwen2.5-0.5b"));
    let remote = "[eval]\nmetric = \"judge\"\nrubric = \"{{ output }}\"\n[eval.judge]\nkind = \"remote\"\nbase_url = \"https://api.example.com/v1\"\nmodel = \"big\"\n";
    assert!(
        matches!(task(remote).unwrap().scoring().unwrap(), Scoring::Judge { tier, .. } if tier.id() == "remote:big")
    );
    // The table survives a round trip (as `rightsize eval --apply` writes it).
    let spec = task(remote).unwrap().spec;
    let back = Task::parse(&toml::to_string(&spec).unwrap(), Path::new("qa.toml")).unwrap();
    assert!(matches!(back.scoring().unwrap(), Scoring::Judge { .. }));
}

#[test]
fn unknown_metric_names_the_field_and_line() {
    let eval = "[eval]\nmetric = \"bleu\"\n";
    let (l, field, msg) = err(eval);
    assert_eq!((l, field.as_str()), (line(eval, "bleu"), "eval.metric"));
    assert!(msg.contains("unknown variant `bleu`"), "{msg}");
    let eval = "[eval]\nmetirc = \"exact\"\n";
    let (l, field, _) = err(eval);
    assert_eq!((l, field.as_str()), (line(eval, "metirc"), "eval.metirc"));
}

#[test]
fn judge_needs_a_rubric_and_a_judge() {
    let eval = "[eval]\nmetric = \"judge\"\njudge = \"qwen2.5-1.5b\"\n";
    let (l, field, msg) = err(eval);
    assert_eq!((l, field.as_str()), (line(eval, "[eval]"), "eval.rubric"));
    assert!(msg.contains("needs `rubric`"), "{msg}");
    let (_, field, _) = err("[eval]\nmetric = \"judge\"\nrubric = \"{{ output }}\"\n");
    assert_eq!(field, "eval.judge");
    let eval = "[eval]\nmetric = \"judge\"\nrubric = \"{{ answer }}\"\njudge = \"qwen2.5-1.5b\"\n";
    let (l, field, msg) = err(eval);
    assert_eq!((l, field.as_str()), (line(eval, "rubric"), "eval.rubric"));
    assert!(msg.contains("`answer`"), "{msg}");
    let eval = "[eval]\nmetric = \"judge\"\nrubric = \"{{ output }}\"\n[eval.judge]\nkind = \"local\"\nmodle = \"x\"\n";
    let (l, field, _) = err(eval);
    assert_eq!((l, field.as_str()), (line(eval, "modle"), "eval.judge.modle"));
    let eval =
        "[eval]\nmetric = \"judge\"\nrubric = \"{{ output }}\"\n[eval.judge]\nkind = \"remote\"\nmodel = \"x\"\n";
    let (l, field, _) = err(eval);
    assert_eq!((l, field.as_str()), (line(eval, "[eval.judge]"), "eval.judge.base_url"));
    let (_, field, _) = err("[eval]\nmetric = \"judge\"\nrubric = \"{{ output }}\"\n[eval.judge]\nkind = \"classifier\"\nencoder = \"minilm-l6\"\n");
    assert_eq!(field, "eval.judge.kind");
}

#[test]
fn options_are_range_checked_and_belong_to_their_metric() {
    let eval = "[eval]\nmetric = \"embedding\"\nembedding_threshold = 1.5\n";
    let (l, field, msg) = err(eval);
    assert_eq!(
        (l, field.as_str()),
        (line(eval, "embedding_threshold"), "eval.embedding_threshold")
    );
    assert!(msg.contains("between 0 and 1"), "{msg}");
    let eval = "[eval]\nembedding_threshold = 0.9\n";
    let (l, field, msg) = err(eval);
    assert_eq!(
        (l, field.as_str()),
        (line(eval, "embedding_threshold"), "eval.embedding_threshold")
    );
    assert!(msg.contains("only applies to metric = \"embedding\""), "{msg}");
    let eval = "[eval]\nmetric = \"embedding\"\nembedding_threshold = \"high\"\n";
    let (l, field, _) = err(eval);
    assert_eq!((l, field.as_str()), (line(eval, "high"), "eval.embedding_threshold"));
    let (_, field, _) = err("[eval]\nmetric = \"regex\"\npattern = \"(\"\n");
    assert_eq!(field, "eval.pattern");
    let (_, field, _) = err("[eval]\nmetric = \"numeric\"\nrel_tolerance = -1\n");
    assert_eq!(field, "eval.rel_tolerance");
}
