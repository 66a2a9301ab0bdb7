//! A task with `[router]` and a trained router starts each run at the routed tier (the answer's
//! tiers list starts there and the pick is in the trace); without a trained router, or when
//! the caller names the start tier, it runs the plain cascade. Real models: all-MiniLM-L6-v2
//! (classifier tier and router) and SmolLM2-135M from the cache. `[router]` is validated like
//! every other field.

use encoder::{EncoderOptions, EncoderRef};
use futures::future::BoxFuture;
use mesh::learned_router::{router_dir, Router, RouterMeta};
use mesh::{EncoderLease, EngineLease, Mesh, Models, Prices, Registry, RunOptions, Task, TaskError};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

// The classifier tier accepts every answer (two labels: its confidence is at least 0.5), so
// only a routed run ever reaches SmolLM2.

/// The two real models, shared by every call (leases are just clones of the `Arc`).
struct Real {
    enc: Arc<encoder::Encoder>,
    dec: Arc<engine::Engine>,
}

impl Models for Real {
    fn decoder<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<EngineLease, mesh::ModelError>> {
        Box::pin(async move {
            if id == "smollm2-135m" {
                Ok(Box::new(self.dec.clone()) as EngineLease)
            } else {
                Err(mesh::ModelError::Unknown(id.into()))
            }
        })
    }
    fn encoder<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<EncoderLease, mesh::ModelError>> {
        Box::pin(async move {
            if id == "minilm-l6" {
                Ok(Arc::new(self.enc.clone()) as EncoderLease)
            } else {
                Err(mesh::ModelError::Unknown(id.into()))
            }
        })
    }
}

const TASK: &str = r#"
inputs = ["ticket"]
prompt = "Which team should handle this ticket: billing or technical?\n\nTicket: {{ ticket }}\n\nAnswer with one word."
examples = "examples.jsonl"
[output]
kind = "label"
labels = ["billing", "technical"]
[[ladder]]
kind = "classifier"
encoder = "minilm-l6"
threshold = 0.5
[[ladder]]
kind = "local"
model = "smollm2-135m"
"#;

const BILLING: &[&str] = &[
    "I was charged twice this month.",
    "Please send the invoice for my last payment.",
    "I want a refund for the duplicate charge.",
    "My card was billed the wrong amount.",
    "Why did my plan's price go up?",
    "I need a receipt for yesterday's payment.",
];
const TECHNICAL: &[&str] = &[
    "The app crashes when I open settings.",
    "Your API returns HTTP 500 on every request.",
    "Sync times out with a null pointer exception.",
    "The device reboots in a loop after the update.",
    "Exports freeze the desktop client.",
    "The SSL handshake fails through our proxy.",
];

fn write_task(dir: &Path, file: &str, version: i64, extra: &str) {
    std::fs::write(
        dir.join(file),
        format!("name = \"routed\"\nversion = {version}\n{TASK}\n{extra}"),
    )
    .unwrap();
}

fn inputs(ticket: &str) -> BTreeMap<String, String> {
    [("ticket".to_string(), ticket.to_string())].into()
}

#[tokio::test]
async fn runs_start_at_the_routed_tier() {
    let (gguf, minilm) = (
        testkit::model_file("smollm2-135m"),
        testkit::cache_root().join("models/minilm-l6"),
    );
    assert!(
        gguf.is_file() && minilm.is_dir(),
        "run `rightsize pull --default` first (the README's test command does)"
    );
    let enc = Arc::new(encoder::Encoder::load(&minilm, EncoderOptions::default()).unwrap());
    let dec = Arc::new(
        engine::Engine::load(
            &gguf,
            engine::EngineConfig {
                n_ctx: 4096,
                n_seq_max: 4,
                ..Default::default()
            },
        )
        .unwrap(),
    );

    let tasks = tempfile::tempdir().unwrap();
    let root = tempfile::tempdir().unwrap();
    let mut examples = String::new();
    for (texts, label) in [(BILLING, "billing"), (TECHNICAL, "technical")] {
        for t in texts {
            examples += &format!("{}\n", serde_json::json!({"input": {"ticket": t}, "expected": label}));
        }
    }
    std::fs::write(tasks.path().join("examples.jsonl"), examples).unwrap();
    write_task(tasks.path(), "routed.toml", 1, "[router]\nencoder = \"minilm-l6\"\n");
    write_task(tasks.path(), "routed.v2.toml", 2, "[router]\nenabled = true\n"); // no router trained for v2

    // A router for version 1 that sends technical tickets straight to SmolLM2.
    let tiers = vec!["classifier:minilm-l6".to_string(), "local:smollm2-135m".to_string()];
    let texts: Vec<String> = BILLING.iter().chain(TECHNICAL).map(|s| s.to_string()).collect();
    let y: Vec<usize> = (0..texts.len()).map(|i| usize::from(i >= BILLING.len())).collect();
    let x = enc
        .embed(&texts.iter().map(String::as_str).collect::<Vec<_>>())
        .unwrap();
    let hash = mesh::learned_router::data_hash(&texts, &y, &tiers, "minilm-l6");
    let meta = RouterMeta {
        task: "routed".into(),
        trained_for_version: 1,
        tiers,
        encoder: "minilm-l6".into(),
        examples: x.len(),
        data_hash: hash.clone(),
        trained_ms: 1,
        cv_accuracy: None,
    };
    Router::train(
        &x,
        &y,
        meta,
        Some(EncoderRef {
            id: "minilm-l6".into(),
            hash: enc.model_hash().ok(),
        }),
    )
    .unwrap()
    .save(&router_dir(root.path(), "routed", 1, &hash))
    .unwrap();

    let registry = Registry::load_dir(tasks.path()).unwrap();
    let mesh = Mesh::new(
        registry,
        Arc::new(Real { enc, dec }),
        None,
        root.path().to_owned(),
        Prices::default(),
    );
    let v1 = || RunOptions {
        version: Some(1),
        ..Default::default()
    };

    let hard = mesh
        .run(
            "routed",
            &inputs("The server throws a stack overflow error on upload."),
            v1(),
        )
        .await
        .unwrap();
    let pick = hard.routed.clone().expect("a trained router picks the start");
    assert_eq!(
        (pick.start, pick.tier.as_str(), pick.fell_back),
        (1, "local:smollm2-135m", false),
        "{pick:?}"
    );
    assert_eq!(
        hard.tiers.iter().map(|a| a.tier.as_str()).collect::<Vec<_>>(),
        ["local:smollm2-135m"],
        "the classifier is skipped"
    );
    assert!(
        pick.cost_usd > 0.0 && (hard.cost_usd - hard.tiers[0].cost_usd - pick.cost_usd).abs() < 1e-12,
        "routing is paid for"
    );
    let json = serde_json::to_value(&hard).unwrap();
    assert_eq!(json["routed"]["tier"], "local:smollm2-135m");

    let easy = mesh
        .run("routed", &inputs("I think I was overcharged on my last bill."), v1())
        .await
        .unwrap();
    assert_eq!(easy.routed.as_ref().map(|p| p.start), Some(0));
    assert_eq!(easy.tiers[0].tier, "classifier:minilm-l6");

    // The caller's start tier wins; no router is consulted.
    let given = mesh
        .run(
            "routed",
            &inputs("The server throws a stack overflow error on upload."),
            RunOptions {
                start_tier: Some(0),
                ..v1()
            },
        )
        .await
        .unwrap();
    assert!(given.routed.is_none());
    assert_eq!(given.tiers[0].tier, "classifier:minilm-l6");

    // Version 2 has `[router]` but no trained router: the plain cascade, from the first tier.
    let plain = mesh
        .run(
            "routed",
            &inputs("The server throws a stack overflow error on upload."),
            RunOptions {
                version: Some(2),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(plain.routed.is_none());
    assert_eq!(plain.tiers[0].tier, "classifier:minilm-l6");
    assert!(serde_json::to_value(&plain).unwrap().get("routed").is_none());
}

#[test]
fn router_table_is_validated_with_file_line_and_field() {
    let src = |router: &str| format!("name = \"t\"\nversion = 1\n{TASK}\n{router}");
    let line_of = |src: &str, key: &str| src.lines().position(|l| l.starts_with(key)).map(|i| i + 1);
    // The examples file is checked too: parse beside a real one.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("examples.jsonl"), "").unwrap();
    let err = |router: &str| match Task::parse(&src(router), &dir.path().join("t.toml")) {
        Err(TaskError::Invalid {
            line, field, message, ..
        }) => (line, field, message),
        other => panic!("expected an invalid-task error, got {other:?}"),
    };
    let ok = Task::parse(&src("[router]\nmin_confidence = 0.6\n"), &dir.path().join("t.toml")).unwrap();
    let r = ok.spec.router.unwrap();
    assert_eq!(
        (r.enabled, r.encoder.as_str(), r.min_confidence),
        (true, "minilm-l6", 0.6)
    );

    let (line, field, msg) = err("[router]\nmin_confidence = 1.5\n");
    assert_eq!(
        (line, field.as_str()),
        (
            line_of(&src("[router]\nmin_confidence = 1.5\n"), "min_confidence"),
            "router.min_confidence"
        )
    );
    assert!(msg.contains("between 0 and 1"), "{msg}");
    let (line, field, msg) = err("[router]\nencodr = \"minilm-l6\"\n");
    assert_eq!(
        (line, field.as_str()),
        (line_of(&src("[router]\nencodr = \"x\"\n"), "encodr"), "encodr")
    );
    assert!(msg.contains("unknown field"), "{msg}");
    let one_tier = format!(
        "name = \"t\"\nversion = 1\n{}\n[router]\nenabled = true\n",
        TASK.split("[[ladder]]\nkind = \"local\"").next().unwrap()
    );
    match Task::parse(&one_tier, &dir.path().join("t.toml")) {
        Err(TaskError::Invalid { field, message, .. }) => assert!(
            field == "router.enabled" && message.contains("at least two tiers"),
            "{field}: {message}"
        ),
        other => panic!("a one-tier ladder cannot route: {other:?}"),
    }
}
