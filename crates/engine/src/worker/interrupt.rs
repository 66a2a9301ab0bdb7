//! Lets an interactive arrival cut short a step that carries only batch work.
//!
//! On 2 CPU cores one decode step of 16 batch sequences takes ~0.3 s, a step with batch
//! prompt chunks longer: an interactive request arriving just after such a step started used
//! to wait for all of it before its own prefill. llama.cpp checks an abort callback after every
//! graph node (well under a millisecond apart); when it fires, `llama_decode` returns 2, the
//! worker removes the cells that step wrote and builds the step again later.

use llama_cpp_2::context::params::LlamaContextParams;
use std::sync::atomic::{AtomicBool, Ordering};

/// The worker `arm`s the callback only for steps without interactive work; `submit` of an
/// interactive job `request`s the interrupt after queueing it.
#[derive(Debug, Default)]
pub(crate) struct Interrupt {
    requested: AtomicBool,
    armed: AtomicBool,
    /// `false` turns the mechanism off (`RIGHTSIZE_STEP_INTERRUPT=0`, for A/B measurement).
    pub enabled: bool,
}

impl Interrupt {
    pub fn new(enabled: bool) -> Self {
        Self {
            enabled,
            ..Default::default()
        }
    }

    /// An interactive job was queued: stop the current batch-only step, if one is running.
    pub fn request(&self) {
        self.requested.store(true, Ordering::Release);
    }

    /// A new round: requests made before it are for jobs the round's drain receives.
    pub(super) fn clear_request(&self) {
        self.requested.store(false, Ordering::Release);
    }

    /// Whether the step about to run may be aborted.
    pub(super) fn arm(&self, armed: bool) {
        self.armed.store(armed, Ordering::Relaxed);
    }

    fn should_abort(&self) -> bool {
        self.armed.load(Ordering::Relaxed) && self.requested.load(Ordering::Acquire)
    }
}

extern "C" fn abort_step(data: *mut std::ffi::c_void) -> bool {
    // SAFETY: `data` is the `Interrupt` given in `with_interrupt`, kept alive (in the engine's
    // shared state) for longer than the context that calls this.
    let i = unsafe { &*(data as *const Interrupt) };
    i.should_abort()
}

/// `params` with llama.cpp's abort callback pointing at `interrupt` (unchanged when the
/// mechanism is off or llama-cpp-2's layout is not as expected, see `raw`).
pub(crate) fn with_interrupt(params: LlamaContextParams, interrupt: &Interrupt) -> LlamaContextParams {
    if !interrupt.enabled {
        return params;
    }
    crate::raw::with_abort_callback(
        params,
        abort_step,
        interrupt as *const Interrupt as *mut std::ffi::c_void,
    )
}
