//! The `rightsize` binary as a user runs it, on the real cached models.

use crate::common::{rightsize, BIN};
use std::process::Command;

#[test]
fn run_streams_an_answer() {
    let (ok, out, err) = rightsize(&[
        "run",
        "smollm2-135m",
        "--temperature",
        "0",
        "--max-tokens",
        "12",
        "--threads",
        "2",
        "Name three colours.",
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("Red"), "{out}");
    assert!(err.contains("completion tokens"), "a usage line on stderr: {err}");
}

#[test]
fn run_reads_the_prompt_from_stdin() {
    let mut child = Command::new(BIN)
        .args(["run", "smollm2-135m", "--temperature", "0", "--max-tokens", "12"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(b"Name three colours.\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("Red"));
}

#[test]
fn run_with_a_json_schema_prints_valid_json() {
    let dir = tempfile::tempdir().unwrap();
    let schema = dir.path().join("contact.json");
    std::fs::write(&schema, r#"{"type":"object","properties":{"email":{"type":"string","maxLength":40},"phone":{"type":"string","maxLength":20}},"required":["email","phone"]}"#).unwrap();
    let (ok, out, err) = rightsize(&[
        "run",
        "smollm2-135m",
        "--temperature",
        "0",
        "--max-tokens",
        "80",
        "--json-schema",
        schema.to_str().unwrap(),
        "Extract the contact: jane@example.com, +44 20 7946 0958",
    ]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert!(v["email"].is_string() && v["phone"].is_string(), "{v}");
}

#[test]
fn bad_input_fails_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, "{not json").unwrap();
    let (ok, _, err) = rightsize(&["run", "smollm2-135m", "--json-schema", bad.to_str().unwrap(), "hi"]);
    assert!(!ok);
    assert!(err.contains("not valid JSON"), "{err}");
    let (ok, _, err) = rightsize(&["run", "no-such-model", "hi"]);
    assert!(!ok);
    assert!(err.contains("smollm2-135m"), "lists the catalog: {err}");
    let (ok, _, err) = rightsize(&["run", "smollm2-135m", "--temperature", "9", "hi"]);
    assert!(!ok);
    assert!(err.contains("temperature"), "{err}");
    let (ok, _, err) = rightsize(&["pull"]);
    assert!(!ok);
    assert!(err.contains("nothing to pull"), "{err}");
    let (ok, _, err) = rightsize(&["pull", "./missing.gguf"]);
    assert!(!ok && !err.is_empty());
}

#[test]
fn models_lists_the_catalog_and_cache_state() {
    let (ok, out, err) = rightsize(&["models", "--json"]);
    assert!(ok, "{err}");
    let rows: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    for id in ["smollm2-135m", "qwen2.5-0.5b", "qwen2.5-1.5b", "minilm-l6", "bbc-news"] {
        let row = rows
            .iter()
            .find(|r| r["id"] == id)
            .unwrap_or_else(|| panic!("{id} missing"));
        if id != "bbc-news" {
            assert_ne!(row["state"], "not pulled", "{id}: the set-up pulls the default models");
        }
    }
}

#[test]
fn keys_create_list_revoke() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("k.db");
    let db = db.to_str().unwrap();
    let (ok, secret, err) = rightsize(&[
        "keys",
        "create",
        "--name",
        "ci",
        "--scope",
        "inference,admin",
        "--store",
        db,
    ]);
    assert!(ok, "{err}");
    assert!(secret.trim().starts_with("rsk-"));
    let (ok, list, _) = rightsize(&["keys", "list", "--store", db]);
    assert!(ok && list.contains("ci") && list.contains("active"));
    assert!(!list.contains(secret.trim()), "secrets are never listed");
    let (ok, _, _) = rightsize(&["keys", "revoke", "ci", "--store", db]);
    assert!(ok);
    let (_, list, _) = rightsize(&["keys", "list", "--store", db]);
    assert!(list.contains("revoked"));
    let (ok, _, err) = rightsize(&["keys", "create", "--name", "x", "--scope", "root", "--store", db]);
    assert!(!ok && err.contains("root"));
}

#[test]
fn keys_carry_a_guardrail_policy() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("k.db");
    let db = db.to_str().unwrap();
    let (ok, _, err) = rightsize(&[
        "keys",
        "create",
        "--name",
        "app",
        "--pii",
        "pseudonymize",
        "--injection",
        "block",
        "--store",
        db,
    ]);
    assert!(ok, "{err}");
    // Changing one field keeps the others.
    let (ok, out, err) = rightsize(&["keys", "guard", "app", "--output-pii", "--store", db]);
    assert!(ok, "{err}");
    let policy: serde_json::Value = serde_json::from_str(out.trim().trim_start_matches("app: ")).unwrap();
    assert_eq!(
        policy,
        serde_json::json!({"pii": "pseudonymize", "injection": "block", "output_pii": true})
    );
    let (_, list, _) = rightsize(&["keys", "list", "--store", db]);
    assert!(list.contains("\"output_pii\":true"), "{list}");
    let (ok, _, err) = rightsize(&["keys", "create", "--name", "bad", "--pii", "shred", "--store", db]);
    assert!(!ok && err.contains("--pii `shred`"), "{err}");
    let (ok, _, err) = rightsize(&[
        "keys",
        "guard",
        "app",
        "--guard",
        "{\"injection_threshold\": 3}",
        "--store",
        db,
    ]);
    assert!(!ok && err.contains("injection_threshold"), "{err}");
    let (ok, out, _) = rightsize(&["keys", "guard", "app", "--clear", "--store", db]);
    assert!(ok && out.contains("no guardrail policy"));
    let (ok, _, err) = rightsize(&["keys", "guard", "nobody", "--pii", "redact", "--store", db]);
    assert!(!ok && err.contains("nobody"), "{err}");
}

#[test]
fn guard_pii_uses_the_configs_recognisers_when_given_one() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("rightsize.toml");
    std::fs::write(
        &cfg,
        "[[model]]\nid = \"smollm2-135m\"\n\n[pii]\ncustom = [{ name = \"ticket_ref\", pattern = 'TCK-\\d{5}' }]\n",
    )
    .unwrap();
    let text = "See TCK-12345, mail bob@example.org";
    let (ok, out, _) = rightsize(&["guard", "pii", text]);
    assert!(
        ok && out == "See TCK-12345, mail [EMAIL]",
        "built-ins only without a config: {out}"
    );
    let (ok, out, err) = rightsize(&["guard", "pii", text, "--config", cfg.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert_eq!(out, "See [TICKET_REF], mail [EMAIL]");
    assert!(err.contains("ticket_ref: 1"), "{err}");
}
