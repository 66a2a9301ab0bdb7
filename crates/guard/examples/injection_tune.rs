//! Chooses the injection head's hyper-parameters by 5-fold cross-validation on the
//! train split only, then reports the chosen configuration once on the held-out split.
//! `cargo run --release -p guard --example injection_tune` (needs minilm-l6 in the cache).
//! Set `GUARD_EMB_CACHE=/tmp/emb.json` to reuse embeddings between runs.

use std::path::PathBuf;

use encoder::{Encoder, EncoderOptions, Head, TrainConfig};
use guard::{load_dataset, Label, Split};

fn model_dir() -> Option<PathBuf> {
    let mut c = Vec::new();
    if let Some(x) = std::env::var_os("RIGHTSIZE_CACHE") {
        c.push(PathBuf::from(x).join("models/minilm-l6"));
    }
    if let Some(h) = std::env::var_os("HOME") {
        c.push(PathBuf::from(h).join(".cache/rightsize/models/minilm-l6"));
    }
    c.into_iter().find(|d| d.join("model.safetensors").is_file())
}

fn prf(head: &Head, x: &[Vec<f32>], y: &[usize], inj: usize) -> (f64, f64) {
    let probs = head.predict_proba(x).expect("predict");
    let (mut tp, mut fp, mut fn_) = (0.0f64, 0.0f64, 0.0f64);
    for (p, &t) in probs.iter().zip(y) {
        match (p[inj] >= 0.5, t == inj) {
            (true, true) => tp += 1.0,
            (true, false) => fp += 1.0,
            (false, true) => fn_ += 1.0,
            _ => {}
        }
    }
    (tp / (tp + fp).max(1.0), tp / (tp + fn_).max(1.0))
}

fn main() {
    let Some(dir) = model_dir() else {
        eprintln!("minilm-l6 not found");
        return;
    };
    let data = load_dataset().expect("dataset");
    let cache = std::env::var_os("GUARD_EMB_CACHE").map(PathBuf::from);
    let emb: Vec<Vec<f32>> = match cache.as_ref().and_then(|p| std::fs::read(p).ok()) {
        Some(bytes) if serde_json::from_slice::<Vec<Vec<f32>>>(&bytes).map(|v| v.len()).ok() == Some(data.len()) => {
            serde_json::from_slice(&bytes).expect("cache")
        }
        _ => {
            let enc = Encoder::load(&dir, EncoderOptions::default()).expect("encoder");
            let texts: Vec<&str> = data.iter().map(|e| e.text.as_str()).collect();
            let e = enc.embed(&texts).expect("embed");
            if let Some(p) = &cache {
                std::fs::write(p, serde_json::to_vec(&e).expect("json")).expect("write cache");
            }
            e
        }
    };
    let labels = vec!["benign".to_string(), "injection".to_string()];
    let inj = 1;
    let y: Vec<usize> = data.iter().map(|e| usize::from(e.label == Label::Injection)).collect();
    let train: Vec<usize> = (0..data.len()).filter(|&i| data[i].split == Split::Train).collect();
    let test: Vec<usize> = (0..data.len()).filter(|&i| data[i].split == Split::Test).collect();
    let pick = |idx: &[usize], scale: f32| -> (Vec<Vec<f32>>, Vec<usize>) {
        let x = idx
            .iter()
            .map(|&i| {
                let mut v = emb[i].clone();
                if scale > 0.0 {
                    v.extend(guard::lexical_features(&data[i].text, scale));
                }
                v
            })
            .collect();
        (x, idx.iter().map(|&i| y[i]).collect())
    };
    let mut best: Option<(f64, TrainConfig, f32)> = None;
    let quick = std::env::var_os("GUARD_TUNE_QUICK").is_some();
    if quick {
        best = Some((f64::NAN, guard::default_train_config(), guard::FEATURE_SCALE));
    }
    for scale in if quick { vec![] } else { vec![0.0f32, 0.25, 0.5, 1.0] } {
        for hidden in [None, Some(64)] {
            for (epochs, lr) in [(400, 1e-2), (800, 3e-3)] {
                for wd in [1e-1] {
                    let cfg = TrainConfig {
                        hidden,
                        epochs,
                        lr,
                        weight_decay: wd,
                        batch_size: None,
                        seed: 7,
                        balance_classes: true,
                    };
                    let (mut ps, mut rs) = (0.0f64, 0.0f64);
                    for fold in 0..5 {
                        let tr: Vec<usize> = train
                            .iter()
                            .enumerate()
                            .filter(|(k, _)| k % 5 != fold)
                            .map(|(_, &i)| i)
                            .collect();
                        let va: Vec<usize> = train
                            .iter()
                            .enumerate()
                            .filter(|(k, _)| k % 5 == fold)
                            .map(|(_, &i)| i)
                            .collect();
                        let (xt, yt) = pick(&tr, scale);
                        let (xv, yv) = pick(&va, scale);
                        let head = Head::train(&xt, &yt, labels.clone(), cfg.clone()).expect("train");
                        let (p, r) = prf(&head, &xv, &yv, inj);
                        ps += p / 5.0;
                        rs += r / 5.0;
                    }
                    let f1 = 2.0 * ps * rs / (ps + rs);
                    println!("scale {scale} hidden {hidden:?} epochs {epochs} lr {lr} wd {wd}: cv precision {ps:.3} recall {rs:.3} f1 {f1:.3}");
                    if best.as_ref().is_none_or(|(b, _, _)| f1 > *b) {
                        best = Some((f1, cfg, scale));
                    }
                }
            }
        }
    }
    let (f1, cfg, scale) = best.expect("a config");
    let (xt, yt) = pick(&train, scale);
    let (xs, ys) = pick(&test, scale);
    let head = Head::train(&xt, &yt, labels, cfg.clone()).expect("train");
    let (p, r) = prf(&head, &xs, &ys, inj);
    println!("chosen scale {scale} {cfg:?} (cv f1 {f1:.3}) -> held-out precision {p:.3} recall {r:.3}");
    if std::env::var_os("SHOW_MISSES").is_some() {
        let probs = head.predict_proba(&xs).expect("predict");
        for (k, &i) in test.iter().enumerate() {
            let s = probs[k][inj];
            if (s >= 0.5) != (ys[k] == inj) {
                println!("  {:?} {s:.3} {:?}", data[i].label, data[i].text);
            }
        }
    }
}
