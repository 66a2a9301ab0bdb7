//! Prints the PII detector's precision / recall as a markdown table (for the README), on
//! the bundled labelled set or on a JSONL file in the same format:
//! `cargo run -p guard --example pii_report [-- path/to/set.jsonl]`

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let lines = match std::env::args().nth(1) {
        Some(path) => guard::parse_eval_jsonl(&std::fs::read_to_string(path)?)?,
        None => guard::load_pii_eval()?,
    };
    let detector = guard::Detector::new(guard::PiiConfig::default())?;
    let report = guard::evaluate(&detector, &lines);
    print!("{}", report.to_markdown());
    if std::env::var_os("SHOW_MISMATCHES").is_some() {
        for m in &report.mismatches {
            println!(
                "line {}: {} {} {:?}",
                m.line,
                if m.spurious { "FP" } else { "FN" },
                m.kind,
                m.text
            );
        }
    }
    Ok(())
}
