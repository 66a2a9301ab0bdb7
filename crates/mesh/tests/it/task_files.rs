//! Task files with errors: each error names the file, the line and the field. The example
//! tasks shipped in `tasks/` are valid.

use mesh::{Registry, Task, TaskError};
use std::path::Path;

const GOOD: &str = r#"name = "t"
version = 1
inputs = ["q"]
prompt = "Answer: {{ q }}"

[output]
kind = "label"
labels = ["yes", "no"]

[[ladder]]
kind = "local"
model = "smollm2-135m"
threshold = 0.8
"#;

fn err(src: &str) -> (Option<usize>, String, String) {
    match Task::parse(src, Path::new("tasks/t.toml")) {
        Err(TaskError::Invalid {
            file,
            line,
            field,
            message,
        }) => {
            assert_eq!(file, Path::new("tasks/t.toml"));
            (line, field, message)
        }
        other => panic!("expected an invalid-task error, got {other:?}"),
    }
}

#[test]
fn a_good_file_parses() {
    let t = Task::parse(GOOD, Path::new("t.toml")).unwrap();
    assert_eq!(t.spec.name, "t");
    assert_eq!(t.tiers().next().unwrap().id(), "local:smollm2-135m");
}

#[test]
fn threshold_out_of_range_names_line_and_field() {
    let (line, field, msg) = err(&GOOD.replace("threshold = 0.8", "threshold = 1.5"));
    assert_eq!(line, Some(13));
    assert_eq!(field, "ladder[0].threshold");
    assert!(msg.contains("between 0 and 1"), "{msg}");
}

#[test]
fn unknown_field_is_named_with_its_line() {
    let (line, field, msg) = err(&GOOD.replace("model = \"smollm2-135m\"", "modle = \"smollm2-135m\""));
    assert_eq!(line, Some(12));
    assert_eq!(field, "modle");
    assert!(msg.contains("unknown field `modle`"), "{msg}");
}

#[test]
fn wrong_type_is_named() {
    let (line, _field, msg) = err(&GOOD.replace("version = 1", "version = \"one\""));
    assert_eq!(line, Some(2));
    assert!(msg.contains("invalid type"), "{msg}");
}

#[test]
fn template_variable_not_in_inputs() {
    let (line, field, msg) = err(&GOOD.replace("{{ q }}", "{{ question }}"));
    assert_eq!((line, field.as_str()), (Some(4), "prompt"));
    assert!(msg.contains("`question`"), "{msg}");
}

#[test]
fn tier_kind_specific_fields() {
    let (_, field, msg) = err(&GOOD.replace("model = \"smollm2-135m\"", ""));
    assert_eq!(field, "ladder[0].model");
    assert!(msg.contains("needs `model`"), "{msg}");
    let remote = GOOD.replace("kind = \"local\"", "kind = \"remote\"");
    let (_, field, _) = err(&remote);
    assert_eq!(field, "ladder[0].base_url");
    let (_, field, msg) = err(&GOOD.replace("kind = \"local\"", "kind = \"classifier\"\nencoder = \"minilm-l6\""));
    assert_eq!(field, "ladder[0].model", "a classifier has no model: {msg}");
}

#[test]
fn output_kind_checks() {
    let (line, field, _) = err(&GOOD.replace("labels = [\"yes\", \"no\"]", "labels = [\"yes\"]"));
    assert_eq!((line, field.as_str()), (Some(8), "output.labels"));
    let (_, field, msg) = err(&GOOD.replace(
        "kind = \"label\"",
        "kind = \"json\"\nschema = { type = \"object\", properties = 5 }",
    ));
    assert_eq!(field, "output.schema");
    assert!(msg.contains("not a valid JSON Schema"), "{msg}");
}

#[test]
fn empty_ladder_and_classifier_without_examples() {
    let no_ladder = &GOOD[..GOOD.find("[[ladder]]").unwrap()];
    let (_, field, _) = err(no_ladder);
    assert_eq!(field, "ladder");
    let (_, field, msg) = err(&GOOD.replace(
        "kind = \"local\"\nmodel = \"smollm2-135m\"",
        "kind = \"classifier\"\nencoder = \"minilm-l6\"",
    ));
    assert_eq!(field, "examples", "{msg}");
}

#[test]
fn registry_reports_every_bad_file_and_duplicate_versions() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.toml"), GOOD).unwrap();
    std::fs::write(dir.path().join("b.toml"), GOOD).unwrap(); // same name and version
    std::fs::write(
        dir.path().join("c.toml"),
        GOOD.replace("threshold = 0.8", "threshold = -1"),
    )
    .unwrap();
    std::fs::write(dir.path().join("d.toml"), GOOD.replace("version = 1", "version = 2")).unwrap();
    let errs = Registry::load_dir(dir.path()).unwrap_err();
    let text: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
    assert_eq!(errs.len(), 2, "{text:?}");
    assert!(
        text[0].contains("defined twice") && text[0].contains("a.toml") && text[0].contains("b.toml"),
        "{text:?}"
    );
    assert!(
        text[1].contains("c.toml:13") && text[1].contains("ladder[0].threshold"),
        "{text:?}"
    );

    std::fs::remove_file(dir.path().join("b.toml")).unwrap();
    std::fs::remove_file(dir.path().join("c.toml")).unwrap();
    let reg = Registry::load_dir(dir.path()).unwrap();
    assert_eq!(reg.versions("t"), vec![1, 2]);
    assert_eq!(reg.get("t", None).unwrap().spec.version, 2, "newest by default");
    assert_eq!(reg.get("t", Some(1)).unwrap().spec.version, 1);
}

#[test]
fn shipped_example_tasks_are_valid() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tasks");
    let reg = Registry::load_dir(&dir).unwrap_or_else(|e| panic!("{e:?}"));
    let mut names: Vec<String> = reg.latest().map(|t| t.spec.name.clone()).collect();
    // bbc-topic's data is built at set-up (git-ignored): before that it is only unavailable.
    for u in reg.unavailable() {
        assert!(u.name == "bbc-topic" && u.reason.contains("data/bbc-topic."), "{u:?}");
        names.push(u.name.clone());
    }
    names.sort();
    assert_eq!(names, ["bbc-topic", "contact-extract", "short-answer", "ticket-triage"]);
}

/// No models: the tests below never run a tier.
struct NoModels;

impl mesh::Models for NoModels {
    fn decoder<'a>(
        &'a self,
        id: &'a str,
    ) -> futures::future::BoxFuture<'a, Result<mesh::EngineLease, mesh::ModelError>> {
        Box::pin(async move { Err(mesh::ModelError::Unknown(id.into())) })
    }
    fn encoder<'a>(
        &'a self,
        id: &'a str,
    ) -> futures::future::BoxFuture<'a, Result<mesh::EncoderLease, mesh::ModelError>> {
        Box::pin(async move { Err(mesh::ModelError::Unknown(id.into())) })
    }
}

#[test]
fn a_valid_task_whose_data_file_is_missing_is_unavailable_and_the_others_load() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.toml"), GOOD).unwrap();
    let bbc = GOOD
        .replace("name = \"t\"", "name = \"news\"")
        .replace("version = 1", "version = 3\ndataset = \"data/news.eval.jsonl\"");
    std::fs::write(dir.path().join("news.toml"), &bbc).unwrap();
    let reg = Registry::load_dir(dir.path())
        .unwrap_or_else(|e| panic!("one missing data file must not fail the directory: {e:?}"));
    assert_eq!(reg.latest().map(|t| t.spec.name.clone()).collect::<Vec<_>>(), ["t"]);
    let u = reg.unavailable();
    assert_eq!(u.len(), 1, "{u:?}");
    assert_eq!(
        (u[0].name.as_str(), u[0].version, u[0].file.as_path()),
        ("news", 3, dir.path().join("news.toml").as_path())
    );
    assert!(
        u[0].reason.contains("news.toml:3")
            && u[0].reason.contains("`dataset`")
            && u[0].reason.contains("data/news.eval.jsonl not found"),
        "{}",
        u[0].reason
    );
    assert_eq!(reg.why_unavailable("news", None), Some(&u[0]));
    assert_eq!(reg.why_unavailable("news", Some(2)), None);
    assert_eq!(reg.why_unavailable("t", None), None);

    // A run of it says why (503 over HTTP); an unknown name is still unknown.
    let mesh = mesh::Mesh::new(
        reg,
        std::sync::Arc::new(NoModels),
        None,
        dir.path().to_owned(),
        mesh::Prices::default(),
    );
    match mesh.task("news", None) {
        Err(e @ mesh::MeshError::Unavailable { .. }) => assert!(
            e.to_string().contains("task `news` is unavailable") && e.to_string().contains("not found"),
            "{e}"
        ),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        mesh.task("news", Some(3)),
        Err(mesh::MeshError::Unavailable { .. })
    ));
    assert!(matches!(mesh.task("nope", None), Err(mesh::MeshError::UnknownTask(_))));
    assert!(mesh.task("t", None).is_ok());

    // The data file appears: the task loads.
    std::fs::create_dir(dir.path().join("data")).unwrap();
    std::fs::write(dir.path().join("data/news.eval.jsonl"), "").unwrap();
    let reg = Registry::load_dir(dir.path()).unwrap();
    assert!(reg.unavailable().is_empty() && reg.get("news", None).is_some());

    // Missing data does not hide other errors: an invalid file is still an error.
    std::fs::remove_file(dir.path().join("data/news.eval.jsonl")).unwrap();
    std::fs::write(
        dir.path().join("news.toml"),
        bbc.replace("threshold = 0.8", "threshold = -1"),
    )
    .unwrap();
    let errs = Registry::load_dir(dir.path()).unwrap_err();
    assert!(
        matches!(&errs[..], [TaskError::Invalid { field, .. }] if field == "ladder[0].threshold"),
        "{errs:?}"
    );
}

#[test]
fn rendering_checks_inputs() {
    let t = Task::parse(GOOD, Path::new("t.toml")).unwrap();
    let mut inputs = std::collections::BTreeMap::new();
    assert!(mesh::render(&t, &inputs)
        .unwrap_err()
        .to_string()
        .contains("missing input `q`"));
    inputs.insert("q".to_string(), "is {{ this }} safe?".to_string());
    let m = mesh::render(&t, &inputs).unwrap();
    assert_eq!(
        m[0].content, "Answer: is {{ this }} safe?",
        "input text is data, not template"
    );
    inputs.insert("z".into(), "x".into());
    assert!(mesh::render(&t, &inputs)
        .unwrap_err()
        .to_string()
        .contains("unknown input `z`"));
}

#[test]
fn guardrails_are_checked_and_named() {
    let with = |rails: &str| format!("{GOOD}\n[guardrails]\n{rails}\n");
    let t = Task::parse(
        &with("pii = \"pseudonymize\"\ninjection = \"flag\"\noutput_banned = [\"(?i)as an ai\"]"),
        Path::new("t.toml"),
    )
    .unwrap();
    assert_eq!(t.spec.guardrails.pii, Some(guard::Mode::Pseudonymize));
    let (line, field, msg) = err(&with("injection_threshold = 2.0"));
    assert_eq!((line, field.as_str()), (Some(16), "guardrails.injection_threshold"));
    assert!(msg.contains("between 0 and 1"), "{msg}");
    let (_, field, msg) = err(&with("output_banned = [\"(open\"]"));
    assert_eq!(field, "guardrails.output_banned");
    assert!(msg.contains("does not compile"), "{msg}");
    let (_, field, _) = err(&with("pii = \"shred\""));
    assert_eq!(field, "pii");
    let (_, field, _) = err(&with("piii = \"redact\""));
    assert_eq!(field, "piii");
}
