//! Constrained output on the smallest real model: it can only emit what the constraint allows.

use crate::common::*;
use engine::*;
use serde_json::json;
use std::sync::OnceLock;

fn smol() -> &'static Engine {
    static E: OnceLock<Engine> = OnceLock::new();
    E.get_or_init(|| load("smollm2-135m", small_cfg()))
}

fn ask(user: &str, c: Constraint, max_tokens: usize) -> Completion {
    let mut req = GenerateRequest::new(
        Prompt::Chat(vec![ChatMessage::new("user", user)]),
        SamplingParams {
            temperature: 0.0,
            max_tokens,
            ..Default::default()
        },
    );
    req.constraint = Some(c);
    smol().generate(req).unwrap()
}

#[test]
fn json_schema_output_is_valid_on_135m() {
    let _process = share_process();
    let schema = json!({
        "type": "object",
        "properties": {
            "email": {"type": "string", "maxLength": 48},
            "phone": {"type": "string", "maxLength": 24},
            "urgent": {"type": "boolean"}
        },
        "required": ["email", "phone", "urgent"]
    });
    // Unbounded strings let a 135M model ramble inside a string until max_tokens (the output
    // is then a valid prefix with finish `length`); bounded strings always close.
    let validator = jsonschema::validator_for(&schema).unwrap();
    let inputs = [
        "Extract the contact: reach Jane at jane.doe@example.com or +44 20 7946 0958, asap!",
        "Contact: bob@corp.io, phone 555-0100. No rush.",
        "Please write a poem about the ocean.",
    ];
    for input in inputs {
        let out = ask(input, Constraint::JsonSchema(schema.clone()), 120);
        let v: serde_json::Value = serde_json::from_str(&out.text).unwrap_or_else(|e| panic!("{e}: {:?}", out.text));
        assert!(validator.is_valid(&v), "{v}");
        assert_eq!(
            out.finish.reason,
            FinishReason::Stop,
            "grammar completes before max_tokens: {:?}",
            out.text
        );
    }
}

#[test]
fn enum_and_number_constraints_hold() {
    let _process = share_process();
    let schema = json!({"type":"object","properties":{"sentiment":{"enum":["positive","negative","neutral"]},"score":{"type":"integer","minimum":1,"maximum":5}},"required":["sentiment","score"]});
    let out = ask(
        "Rate this review from 1 to 5: 'Terrible service, never again.'",
        Constraint::JsonSchema(schema.clone()),
        60,
    );
    let v: serde_json::Value = serde_json::from_str(&out.text).unwrap_or_else(|e| panic!("{e}: {:?}", out.text));
    assert!(jsonschema::validator_for(&schema).unwrap().is_valid(&v), "{v}");
}

#[test]
fn json_object_mode_gives_an_object() {
    let _process = share_process();
    let out = ask("Give me a JSON object describing a cat.", Constraint::JsonObject, 80);
    // Either a complete object, or cut at max_tokens; when complete it must parse.
    if out.finish.reason == FinishReason::Stop {
        assert!(
            serde_json::from_str::<serde_json::Value>(&out.text)
                .unwrap()
                .is_object(),
            "{:?}",
            out.text
        );
    } else {
        assert!(out.text.trim_start().starts_with('{'), "{:?}", out.text);
    }
}

#[test]
fn label_constraint_picks_one_label() {
    let _process = share_process();
    let labels: Vec<String> = ["billing", "technical", "account", "other"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    for input in [
        "My invoice charged me twice.",
        "The app crashes when I click save.",
        "I love you",
    ] {
        let out = ask(
            &format!("Classify this support ticket: {input}"),
            Constraint::Labels(labels.clone()),
            10,
        );
        assert!(labels.contains(&out.text), "{:?}", out.text);
    }
}

#[test]
fn regex_constraint_matches() {
    let _process = share_process();
    // Note: llguidance's `\d` is Unicode-aware (it matches e.g. U+1FBF8); ASCII digits need [0-9].
    let out = ask(
        "What is your phone number?",
        Constraint::Regex(r"\([0-9]{3}\) [0-9]{3}-[0-9]{4}".into()),
        20,
    );
    let ok = out.text.len() == 14
        && out.text.chars().enumerate().all(|(i, c)| match i {
            0 => c == '(',
            4 => c == ')',
            5 => c == ' ',
            9 => c == '-',
            _ => c.is_ascii_digit(),
        });
    assert!(ok, "{:?}", out.text);
}

#[test]
fn invalid_constraints_are_rejected_before_running() {
    let _process = share_process();
    let bad = [
        Constraint::JsonSchema(json!(42)),
        Constraint::JsonSchema(json!({"type": "object", "properties": {"a": {"$ref": "#/definitions/missing"}}})),
        Constraint::Regex("(unclosed".into()),
        Constraint::Labels(vec![]),
    ];
    for c in bad {
        let mut req = GenerateRequest::new(Prompt::Text("x".into()), SamplingParams::default());
        req.constraint = Some(c.clone());
        match smol().submit(req) {
            Err(EngineError::InvalidConstraint(msg)) => assert!(!msg.is_empty()),
            other => panic!("{c:?} gave {other:?}"),
        }
    }
}
