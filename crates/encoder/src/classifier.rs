//! [`Classifier`]: an [`Encoder`] plus a [`Head`] — text in, label out. The building
//! block for task routers, label-task tiers and the prompt-injection detector.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use crate::error::{EncoderError, Result};
use crate::head::{argmax, EncoderRef, Head};
use crate::model::Encoder;
use crate::train::TrainConfig;

/// One classification result.
#[derive(Debug, Clone, PartialEq)]
pub struct Prediction {
    /// The most probable label.
    pub label: String,
    /// Its index in [`Classifier::labels`].
    pub index: usize,
    /// Its probability.
    pub prob: f32,
    /// Probabilities of all labels, in [`Classifier::labels`] order.
    pub probs: Vec<f32>,
}

/// A text classifier: embeddings from a shared encoder, decisions from a head.
/// `Send + Sync`; cheap to clone (the encoder is shared).
#[derive(Debug, Clone)]
pub struct Classifier {
    encoder: Arc<Encoder>,
    head: Head,
}

impl Classifier {
    /// Pairs an encoder with a head, checking that the head was made for this encoder's
    /// embeddings ([`Head::check_compatible`]).
    pub fn new(encoder: Arc<Encoder>, head: Head) -> Result<Classifier> {
        head.check_compatible(&encoder)?;
        Ok(Classifier { encoder, head })
    }

    /// Loads a head saved with [`Classifier::save`] / [`Head::save`] for `encoder`.
    pub fn load(encoder: Arc<Encoder>, dir: &Path) -> Result<Classifier> {
        Classifier::new(encoder, Head::load(dir)?)
    }

    /// Saves the head (with the encoder's id and hash in its metadata).
    pub fn save(&self, dir: &Path) -> Result<()> {
        self.head.save(dir)
    }

    /// Embeds the texts of `examples` and trains a head on them. Labels are the distinct
    /// label strings, sorted; the head records the encoder's id and hash.
    pub fn train_from_examples<T: AsRef<str>, L: AsRef<str>>(
        encoder: Arc<Encoder>,
        examples: &[(T, L)],
        cfg: TrainConfig,
    ) -> Result<Classifier> {
        if examples.is_empty() {
            return Err(EncoderError::InvalidTrainingData("no training examples".into()));
        }
        let labels: Vec<String> = examples
            .iter()
            .map(|(_, l)| l.as_ref().to_string())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let y: Vec<usize> = examples
            .iter()
            .map(|(_, l)| {
                labels
                    .binary_search_by(|x| x.as_str().cmp(l.as_ref()))
                    .expect("label present")
            })
            .collect();
        let texts: Vec<&str> = examples.iter().map(|(t, _)| t.as_ref()).collect();
        let x = encoder.embed(&texts)?;
        let mut head = Head::train(&x, &y, labels, cfg)?;
        head.set_encoder(Some(EncoderRef {
            id: encoder.model_id().to_string(),
            hash: Some(encoder.model_hash()?),
        }));
        Ok(Classifier { encoder, head })
    }

    /// Classifies each text. An empty slice gives an empty result.
    pub fn classify(&self, texts: &[&str]) -> Result<Vec<Prediction>> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let x = self.encoder.embed(texts)?;
        Ok(self
            .head
            .predict_proba(&x)?
            .into_iter()
            .map(|probs| {
                let index = argmax(&probs);
                Prediction {
                    label: self.head.labels()[index].clone(),
                    index,
                    prob: probs[index],
                    probs,
                }
            })
            .collect())
    }

    pub fn labels(&self) -> &[String] {
        self.head.labels()
    }

    pub fn head(&self) -> &Head {
        &self.head
    }

    pub fn encoder(&self) -> &Arc<Encoder> {
        &self.encoder
    }
}
