//! `POST /v1/guard/pii`: the detector alone over HTTP.

use crate::common::{self, TestServer};
use serde_json::{json, Value};

#[test]
fn pii_endpoint_finds_redacts_and_blocks() {
    // No model is pinned, so nothing loads: the guard needs none.
    let s = TestServer::start("[[model]]\nid = \"smollm2-135m\"\n");
    let url = format!("{}/v1/guard/pii", s.base);
    let text = "Card 4242 4242 4242 4242, mail jane.doe@example.com; order #123-456-7890";
    let r: Value = TestServer::client()
        .post(&url)
        .json(&json!({"input": text}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(
        r["text"], "Card [CREDIT_CARD], mail [EMAIL]; order #123-456-7890",
        "{r}"
    );
    assert_eq!(r["counts"]["credit_card"], 1);
    let e = &r["entities"][1];
    assert_eq!(
        &text[e["start"].as_u64().unwrap() as usize..e["end"].as_u64().unwrap() as usize],
        "jane.doe@example.com"
    );

    let r = TestServer::client()
        .post(&url)
        .json(&json!({"input": text, "mode": "block"}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 422);
    let body = r.text().unwrap();
    assert!(
        body.contains("credit_card") && !body.contains("4242"),
        "names kinds, never values: {body}"
    );
    let r = TestServer::client()
        .post(&url)
        .json(&json!({"input": text, "mode": "shout"}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 422);
}

#[test]
fn custom_recognisers_from_the_config_reach_the_endpoint_and_the_request_path() {
    let cfg = r#"
[[model]]
id = "smollm2-135m"

[guard]
pii = "block"

[pii]
disabled = ["ip_address"]

[[pii.custom]]
name = "employee_id"
pattern = '(?i)employee\s+id\s*(?P<pii>E\d{6})'
"#;
    let s = TestServer::start(cfg);
    let text = "Employee ID E123456 logged in from 10.0.0.7";
    let r: Value = TestServer::client()
        .post(format!("{}/v1/guard/pii", s.base))
        .json(&json!({"input": text}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(
        r["text"], "Employee ID [EMPLOYEE_ID] logged in from 10.0.0.7",
        "custom kind found, disabled ipv4 left alone: {r}"
    );
    assert_eq!(r["counts"]["employee_id"], 1);

    // The server's `[guard] pii = "block"` applies the same detector to chat: the custom
    // kind is refused (named, value never echoed) before any model is touched.
    let r = s.chat(
        "smollm2-135m",
        "Look up employee id E654321 please",
        json!({"max_tokens": 4}),
    );
    assert_eq!(r.status(), 422);
    let body = r.text().unwrap();
    assert!(body.contains("employee_id") && !body.contains("E654321"), "{body}");
    assert!(
        s.resident().is_empty(),
        "blocked before any model loaded: {:?}",
        s.resident()
    );

    // Tasks use the server's detector too: a task that blocks only `employee_id`.
    let tmp = tempfile::tempdir().unwrap();
    let task = format!("name = \"hr\"\nversion = 1\n{}\n[guardrails]\npii = \"block\"\npii_kinds = [\"employee_id\"]\n\n[[ladder]]\nkind = \"local\"\nmodel = \"smollm2-135m\"\nthreshold = 0.0\n", common::fixtures::SENTIMENT_PROMPT);
    std::fs::write(tmp.path().join("hr.toml"), task).unwrap();
    let s = TestServer::start_with(
        "[[model]]\nid = \"smollm2-135m\"\n[pii]\ncustom = [{ name = \"employee_id\", pattern = 'E\\d{6}' }]\n",
        Some((tmp.path().to_owned(), tmp.path().join("runs.db"))),
    );
    let r = TestServer::client()
        .post(format!("{}/v1/tasks/hr", s.base))
        .json(&json!({"input": {"text": "E777777 says it broke"}}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 422);
    let body = r.text().unwrap();
    assert!(body.contains("employee_id") && !body.contains("E777777"), "{body}");
}

#[test]
fn a_bad_custom_recogniser_is_a_config_error_naming_it() {
    for (pattern, name) in [("(unclosed", "badge"), ("x", "email")] {
        let cfg =
            format!("[[model]]\nid = \"smollm2-135m\"\n\n[[pii.custom]]\nname = \"{name}\"\npattern = '{pattern}'\n");
        let e = server::ServerConfig::from_toml(&cfg).expect_err("refused").to_string();
        assert!(e.contains("[pii]") && e.contains(name), "{e}");
    }
    // A kind to switch off must be a built-in one: a typo would otherwise switch off nothing.
    let e = server::ServerConfig::from_toml("[[model]]\nid = \"smollm2-135m\"\n\n[pii]\ndisabled = [\"ipv4\"]\n")
        .expect_err("refused")
        .to_string();
    assert!(e.contains("ipv4") && e.contains("ip_address"), "{e}");
}
