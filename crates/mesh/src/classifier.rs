//! The classifier tier: an embedding head trained on the task's examples the first time the
//! tier runs, saved next to the model cache and reused while the examples and encoder stay
//! the same.

use crate::error::MeshError;
use crate::examples::{self, Example};
use crate::task::Task;
use encoder::{Encoder, Head, TrainConfig};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// Where a task's head lives: keyed by task, version and a hash of examples + encoder id.
pub fn head_dir(root: &Path, task: &Task, encoder_id: &str) -> Result<PathBuf, MeshError> {
    let path = task
        .examples_path()
        .ok_or_else(|| MeshError::BadInput("the classifier tier needs `examples`".into()))?;
    let bytes = std::fs::read(&path).map_err(|e| MeshError::BadInput(format!("{}: {e}", path.display())))?;
    let mut h = Sha256::new();
    h.update(&bytes);
    h.update(encoder_id.as_bytes());
    h.update(task.spec.output.labels.join("\u{1f}").as_bytes());
    let tag = &hex::encode(h.finalize())[..12];
    Ok(root
        .join("heads")
        .join(&task.spec.name)
        .join(format!("v{}-{tag}", task.spec.version)))
}

/// Load the saved head or train one (blocking: call from a blocking thread).
pub fn load_or_train(dir: &Path, task: &Task, enc: &Encoder) -> Result<Head, MeshError> {
    if dir.is_dir() {
        if let Ok(h) = Head::load_for(dir, enc) {
            return Ok(h);
        }
    }
    let path = task
        .examples_path()
        .ok_or_else(|| MeshError::BadInput("the classifier tier needs `examples`".into()))?;
    let items: Vec<Example> = examples::load(&path)?;
    let labels = task.spec.output.labels.clone();
    let mut texts = Vec::new();
    let mut ys = Vec::new();
    for (i, ex) in items.iter().enumerate() {
        let l = ex.expected.as_str().unwrap_or("");
        let y = labels.iter().position(|x| x == l).ok_or_else(|| {
            MeshError::BadInput(format!(
                "{}: example {}: `expected` = {} is not one of the task's labels",
                path.display(),
                i + 1,
                ex.expected
            ))
        })?;
        texts.push(examples::encoder_text(&task.spec.inputs, &ex.input));
        ys.push(y);
    }
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let x = enc
        .embed(&refs)
        .map_err(|e| MeshError::BadInput(format!("embedding examples: {e}")))?;
    let cfg = TrainConfig {
        balance_classes: true,
        ..TrainConfig::default()
    };
    let mut head =
        Head::train(&x, &ys, labels, cfg).map_err(|e| MeshError::BadInput(format!("training the head: {e}")))?;
    head.set_encoder(Some(encoder::EncoderRef {
        id: enc.model_id().to_owned(),
        hash: enc.model_hash().ok(),
    }));
    if let Err(e) = std::fs::create_dir_all(dir)
        .map_err(|e| e.to_string())
        .and_then(|_| head.save(dir).map_err(|e| e.to_string()))
    {
        tracing::warn!(dir = %dir.display(), error = %e, "could not save the trained head; it will be retrained next start");
    }
    Ok(head)
}
