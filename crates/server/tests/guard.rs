//! `POST /v1/guard/pii`: the detector alone over HTTP.

mod common;
use common::TestServer;
use serde_json::{json, Value};

#[test]
fn pii_endpoint_finds_redacts_and_blocks() {
    // No model is pinned, so nothing loads: the guard needs none.
    let s = TestServer::start("[[model]]\nid = \"smollm2-135m\"\n");
    let url = format!("{}/v1/guard/pii", s.base);
    let text = "Card 4242 4242 4242 4242, mail jane.doe@example.com; order #123-456-7890";
    let r: Value = TestServer::client().post(&url).json(&json!({"input": text})).send().unwrap().json().unwrap();
    assert_eq!(r["text"], "Card [CREDIT_CARD], mail [EMAIL]; order #123-456-7890", "{r}");
    assert_eq!(r["counts"]["credit_card"], 1);
    let e = &r["entities"][1];
    assert_eq!(&text[e["start"].as_u64().unwrap() as usize..e["end"].as_u64().unwrap() as usize], "jane.doe@example.com");

    let r = TestServer::client().post(&url).json(&json!({"input": text, "mode": "block"})).send().unwrap();
    assert_eq!(r.status(), 422);
    let body = r.text().unwrap();
    assert!(body.contains("credit_card") && !body.contains("4242"), "names kinds, never values: {body}");
    let r = TestServer::client().post(&url).json(&json!({"input": text, "mode": "shout"})).send().unwrap();
    assert_eq!(r.status(), 422);
}
