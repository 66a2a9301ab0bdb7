//! [`Guards`]: the one guard engine of a process — its PII detector, the key for `hash`
//! mode, the prompt-injection head and where that head is kept — built once and shared by
//! `Arc` by every path that guards text (the server's chat, completions and embeddings,
//! the mesh's task runs, `POST /v1/guard/pii`), so they detect, hash and score alike.
//!
//! Why one value: a value hashed under `hash` mode in a chat request and in a task run
//! must give the same `[EMAIL:…]`, the injection head must be loaded (or trained) once per
//! process, and it must live under the configured cache root, not wherever the
//! environment points.
//!
//! The injection head runs on MiniLM, which this crate does not own: the caller lends it
//! per check through [`EncoderLender`] (the server's pool, the mesh's models), so no second
//! copy is loaded and this crate stays below both.

use std::future::Future;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use encoder::Encoder;
use sha2::{Digest, Sha256};

use crate::error::{GuardError, Result};
use crate::injection::{self, InjectionHead};
use crate::pii::{Detector, PiiSpan};
use crate::redact::{Mode, Policy, Redacted};
use crate::screen::InputError;

/// The encoder the injection head runs on (a model id of the lender's).
pub const INJECTION_ENCODER: &str = "minilm-l6";

/// Texts longer than this (bytes, all together) are guarded on the blocking pool, not on
/// the async workers.
pub const OFF_THREAD_BYTES: usize = 16 * 1024;

/// An encoder held for one check; shared so a blocking thread can borrow it while the
/// caller keeps the lease (the lender will not evict it meanwhile).
pub type EncoderLease = Arc<dyn Deref<Target = Encoder> + Send + Sync>;

/// Lends the encoder the injection head needs, for the duration of one check.
pub trait EncoderLender: Send + Sync {
    /// How the lender fails (the caller's own error type, passed through unchanged).
    type Error: Send;
    fn lend<'a>(&'a self, id: &'a str) -> impl Future<Output = Result<EncoderLease, Self::Error>> + Send + 'a;
}

/// The guard engine. Cheap to share behind an `Arc`; holds no lock across an `.await`.
pub struct Guards {
    detector: Arc<Detector>,
    salt: String,
    /// `<cache root>/heads`: the injection head is saved under `injection/<key>`.
    heads: PathBuf,
    injection: OnceLock<Arc<InjectionHead>>,
}

impl std::fmt::Debug for Guards {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guards")
            .field("heads", &self.heads)
            .finish_non_exhaustive()
    }
}

impl Guards {
    /// `salt` keys `hash` mode (the server derives it from its key file); trained heads are
    /// kept under `<cache_root>/heads`.
    pub fn new(detector: Arc<Detector>, salt: impl Into<String>, cache_root: &Path) -> Guards {
        Guards {
            detector,
            salt: salt.into(),
            heads: cache_root.join("heads"),
            injection: OnceLock::new(),
        }
    }

    pub fn detector(&self) -> &Arc<Detector> {
        &self.detector
    }

    /// The key of `hash` mode.
    pub fn salt(&self) -> &str {
        &self.salt
    }

    /// Every kind under `mode`, hashing with this engine's salt.
    pub fn policy(&self, mode: Mode) -> Policy {
        Policy::new(mode).with_salt(self.salt.as_str())
    }

    /// The spans in `text` and `text` under `mode` (`POST /v1/guard/pii`); large texts are
    /// scanned on the blocking pool.
    pub async fn scan(&self, text: String, mode: Mode) -> Result<(Vec<PiiSpan>, Redacted)> {
        let (d, policy) = (self.detector.clone(), self.policy(mode));
        let large = text.len() > OFF_THREAD_BYTES;
        off_thread_if(large, move || d.apply(&text, &policy).map(|red| (d.detect(&text), red))).await?
    }

    /// `text` with every PII span redacted (`[EMAIL]`), or empty if that fails: what an
    /// audit that keeps full text stores of a request its guards never rewrote.
    pub async fn redact(&self, text: &str) -> String {
        let (d, large, text) = (self.detector.clone(), text.len() > OFF_THREAD_BYTES, text.to_owned());
        let work = move || {
            d.apply(&text, &Policy::new(Mode::Redact))
                .map(|r| r.text)
                .unwrap_or_default()
        };
        off_thread_if(large, work).await.unwrap_or_default()
    }

    /// Highest injection probability over `texts`, on the lent encoder (blocking work on a
    /// blocking thread).
    pub async fn injection_score<L: EncoderLender>(
        self: &Arc<Self>,
        texts: Vec<String>,
        lender: &L,
    ) -> std::result::Result<f32, InputError<L::Error>> {
        let enc = lender.lend(INJECTION_ENCODER).await.map_err(InputError::Lend)?;
        let me = self.clone();
        let work = move || {
            let head = me.injection_head(&enc)?;
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            Ok(head.score_batch(&enc, &refs)?.into_iter().fold(0.0f32, f32::max))
        };
        off_thread_if(true, work)
            .await
            .and_then(|r| r)
            .map_err(InputError::Scoring)
    }

    /// The injection head for `enc`, loaded or trained on first use (blocking). Two first
    /// callers at once may both train; the first head stored is the one kept.
    pub fn injection_head(&self, enc: &Encoder) -> Result<Arc<InjectionHead>> {
        if let Some(h) = self.injection.get() {
            return Ok(h.clone());
        }
        let h = Arc::new(load_or_train_injection(&injection_dir(&self.heads, enc), enc)?);
        Ok(self.injection.get_or_init(|| h).clone())
    }
}

/// Where the injection head lives: keyed by the bundled set, the feature set and the encoder.
fn injection_dir(heads: &Path, enc: &Encoder) -> PathBuf {
    let mut h = Sha256::new();
    h.update(injection::INJECTION_JSONL.as_bytes());
    h.update(injection::FEATURES_VERSION.to_le_bytes());
    h.update(enc.model_id().as_bytes());
    heads.join("injection").join(&hex::encode(h.finalize())[..12])
}

/// Load the saved injection head or train it on the bundled train split (blocking).
fn load_or_train_injection(dir: &Path, enc: &Encoder) -> Result<InjectionHead> {
    if let Ok(h) = InjectionHead::load(dir, enc) {
        return Ok(h);
    }
    let train: Vec<injection::Example> = injection::load_dataset()?
        .into_iter()
        .filter(|e| e.split == injection::Split::Train)
        .collect();
    let head = InjectionHead::train_with(enc, &train, injection::default_train_config())?;
    let saved = std::fs::create_dir_all(dir).map_err(|source| GuardError::Io {
        path: dir.to_owned(),
        source,
    });
    if let Err(e) = saved.and_then(|_| head.save(dir)) {
        tracing::warn!(dir = %dir.display(), error = %e, "could not save the injection head; it will be retrained next start");
    }
    Ok(head)
}

/// Run guard work (CPU, linear in the text) here when it is small, on the blocking pool when
/// `large`, so a big body never stalls the async workers.
pub(crate) async fn off_thread_if<T: Send + 'static>(
    large: bool,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T> {
    if large {
        tokio::task::spawn_blocking(work)
            .await
            .map_err(|e| GuardError::Worker(e.to_string()))
    } else {
        Ok(work())
    }
}
