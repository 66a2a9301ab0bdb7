//! What the mesh needs from the model pool: a decoder or an encoder by id, held for the
//! duration of one tier call (the pool will not evict a model while it is leased).

use crate::error::ModelError;
use futures::future::BoxFuture;
use std::ops::Deref;

pub type EngineLease = Box<dyn Deref<Target = engine::Engine> + Send + Sync>;
/// Shared so a blocking thread can borrow the encoder while the caller keeps the lease.
pub type EncoderLease = std::sync::Arc<dyn Deref<Target = encoder::Encoder> + Send + Sync>;

/// Implemented by the server over its pool (and by tests over a fixed set of models).
pub trait Models: Send + Sync + 'static {
    fn decoder<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<EngineLease, ModelError>>;
    fn encoder<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<EncoderLease, ModelError>>;
}
