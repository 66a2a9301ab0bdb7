//! Task fixtures shared by the test files: the sentiment prompt the tasks tests use, labelled
//! reviews to train a classifier tier on (and the same reviews with the labels swapped, a
//! tier that answers wrong by construction).
#![allow(dead_code)]

/// SmolLM2-135M, Qwen2.5-0.5B and MiniLM, pinned: the models the task tests run on.
pub const SMOL_QWEN_MINILM: &str = r#"
[[model]]
id = "smollm2-135m"
pin = true
ctx = 1024
max_sequences = 4
[[model]]
id = "qwen2.5-0.5b"
pin = true
ctx = 1024
max_sequences = 2
[[model]]
id = "minilm-l6"
pin = true
"#;

/// A two-label task's inputs, prompt and output (the name, version and ladder are added).
pub const SENTIMENT_PROMPT: &str = r#"
inputs = ["text"]
prompt = """Is the sentiment of this review positive or negative?

Review: {{ text }}

Answer with one word: positive or negative."""
[output]
kind = "label"
labels = ["positive", "negative"]
"#;

const POSITIVE: &[&str] = &[
    "Fantastic quality, I use it every day and love it.",
    "Arrived early and works perfectly, very happy.",
    "Best purchase I made this year, highly recommend.",
    "Great value for the price, exceeded my expectations.",
    "The staff were friendly and the product is excellent.",
    "Beautiful design and it feels very sturdy.",
    "Five stars, it does exactly what it promises.",
    "My kids adore it, wonderful gift.",
    "Comfortable, reliable and easy to set up.",
    "Superb sound and the battery lasts for days.",
];

const NEGATIVE: &[&str] = &[
    "Broke after two days, complete waste of money.",
    "Terrible customer service, nobody answered my emails.",
    "It arrived damaged and smells awful.",
    "Worst product I have ever bought, avoid it.",
    "Cheap plastic that cracked the first time I used it.",
    "Never arrived and the refund took months.",
    "Stopped working after a week, very disappointed.",
    "Uncomfortable, noisy and overpriced.",
    "The instructions are useless and it does not fit.",
    "Battery dies within an hour, awful.",
];

/// Reviews with the right labels (`flipped = false`) or each label swapped, as JSONL examples.
pub fn sentiment_examples(flipped: bool) -> String {
    let (pos, neg) = if flipped {
        ("negative", "positive")
    } else {
        ("positive", "negative")
    };
    let line = |t: &str, l: &str| format!("{}\n", serde_json::json!({"input": {"text": t}, "expected": l}));
    POSITIVE
        .iter()
        .map(|t| line(t, pos))
        .chain(NEGATIVE.iter().map(|t| line(t, neg)))
        .collect()
}

/// Clear reviews not among the examples, with their sentiment.
pub const FRESH_REVIEWS: &[(&str, &str)] = &[
    ("I love this blender, it is wonderful and works perfectly!", "positive"),
    ("Excellent headphones, crisp sound and very comfortable.", "positive"),
    ("Absolutely the worst purchase I have ever made.", "negative"),
    ("The chair collapsed on the first day, horrible quality.", "negative"),
];
