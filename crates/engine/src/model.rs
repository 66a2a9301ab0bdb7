//! Loading a GGUF model (memory-mapped: no copy of the weights) and reading what the file says
//! about itself: architecture, context length, chat template, special tokens. A loaded
//! [`Model`] outlives its engines and can sleep between them.

use crate::{mapping, template::ChatTemplate, EngineError};
use llama_cpp_2::{llama_backend::LlamaBackend, model::params::LlamaModelParams, model::LlamaModel, token::LlamaToken};
use serde::Serialize;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::SystemTime;
use std::{cell::Cell, io::Read, path::Path, path::PathBuf};

/// A parsed model file: llama.cpp's model (metadata, vocabulary, tensors pointing into the
/// file mapping), its chat template and what the file says about itself. No context, no KV
/// cache: an [`crate::Engine`] adds those and runs on an `Arc<Model>`.
///
/// Why apart from the engine: parsing a file is most of a cold load (llama.cpp's vocabulary
/// build and metadata pass: ~150 ms for SmolLM2-135M, ~400–600 ms for Qwen2.5's 152k-token
/// vocabulary on 2 cores), while a context is ~10 ms. A pool that evicts an engine can keep
/// its `Model` **asleep**: the weight pages are handed back to the kernel
/// ([`Model::release_pages`], done by the last engine to stop) and only the parsed vocabulary
/// stays (12–38 MiB measured, counted by [`Model::overhead_bytes`]), so the next engine on it starts in
/// milliseconds and computes exactly what a fresh load would (same tensors, same kernels).
pub struct Model {
    llama: LlamaModel,
    info: ModelInfo,
    template: Option<ChatTemplate>,
    n_gpu_layers: u32,
    repack: bool,
    /// Where llama.cpp mapped the file (empty when unknown: the model cannot sleep).
    mapping: Vec<(usize, usize)>,
    /// The file's length and modification time at load.
    stamp: (u64, Option<SystemTime>),
    /// Engines running on this model now.
    engines: AtomicUsize,
}

/// Host memory a parsed model holds besides its weights, per vocabulary entry: llama.cpp's
/// token table, text-to-id map, BPE merge ranks and piece cache. Measured with the allocator
/// (`engine/tests/it/sleep.rs`, glibc's `mallinfo2` around a load): 262–314 B for SmolLM2 (49k
/// tokens) and Qwen2.5 (152k).
pub const ASLEEP_BYTES_PER_TOKEN: u64 = 384;

fn stamp(path: &Path) -> (u64, Option<SystemTime>) {
    std::fs::metadata(path)
        .map(|m| (m.len(), m.modified().ok()))
        .unwrap_or((0, None))
}

impl Model {
    /// Parse `path` (memory-mapped), with `n_gpu_layers` offloaded in `cuda` builds; `repack`
    /// as [`crate::EngineConfig::repack`].
    pub fn load(path: &Path, n_gpu_layers: u32, repack: bool) -> Result<Self, EngineError> {
        // One load at a time: the mapping is found as the file's mappings that appeared
        // while this load ran (llama.cpp does not say where it mapped the file).
        static LOADING: Mutex<()> = Mutex::new(());
        let _one = LOADING.lock().unwrap_or_else(|e| e.into_inner());
        let file = mapping::FileId::of(path);
        let before = file.as_ref().map(mapping::ranges).unwrap_or_default();
        let stamp = stamp(path);
        let (llama, info) = load(path, n_gpu_layers, repack)?;
        let mapping = file
            .map(|f| mapping::new_ranges(&before, mapping::ranges(&f)))
            .unwrap_or_default();
        let template = match &info.chat_template {
            Some(src) => Some(ChatTemplate::new(
                src,
                info.bos_token.as_deref().unwrap_or(""),
                info.eos_token.as_deref().unwrap_or(""),
            )?),
            None => None,
        };
        Ok(Self {
            llama,
            info,
            template,
            n_gpu_layers,
            repack,
            mapping,
            stamp,
            engines: AtomicUsize::new(0),
        })
    }

    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    pub(crate) fn llama(&self) -> &LlamaModel {
        &self.llama
    }

    pub(crate) fn template(&self) -> Option<&ChatTemplate> {
        self.template.as_ref()
    }

    /// Whether an engine with these weight settings may run on this model.
    pub fn loaded_with(&self, n_gpu_layers: u32, repack: bool) -> bool {
        self.n_gpu_layers == n_gpu_layers && self.repack == repack
    }

    /// Whether the file on disk is still the one loaded (same length and modification time).
    pub fn is_current(&self) -> bool {
        stamp(&self.info.path) == self.stamp
    }

    /// The file's length and modification time when it was loaded.
    pub fn file_stamp(&self) -> (u64, Option<SystemTime>) {
        self.stamp
    }

    /// Whether the model can sleep: every weight lives in the file mapping (no GPU layers,
    /// nothing repacked) and the mapping was found.
    pub fn can_sleep(&self) -> bool {
        self.n_gpu_layers == 0 && self.info.copied_weight_bytes == 0 && !self.mapping.is_empty()
    }

    /// Host memory the parsed model holds besides its weights (vocabulary tables): all it
    /// holds while asleep (no engine, weight pages released).
    pub fn overhead_bytes(&self) -> u64 {
        self.info.n_vocab as u64 * ASLEEP_BYTES_PER_TOKEN
    }

    /// Bytes of the weight mapping resident in this process now (Linux; 0 elsewhere).
    pub fn resident_weight_bytes(&self) -> u64 {
        mapping::resident_bytes(&self.mapping)
    }

    /// Hand the weight pages back to the kernel (see `mapping`). Later reads fault them in
    /// again, so this is safe at any time; engines call it when the last one stops.
    pub fn release_pages(&self) {
        mapping::release(&self.mapping);
    }

    pub(crate) fn engine_started(&self) {
        self.engines.fetch_add(1, Ordering::AcqRel);
    }

    /// Returns whether that was the last engine running on this model.
    pub(crate) fn engine_stopped(&self) -> bool {
        self.engines.fetch_sub(1, Ordering::AcqRel) == 1
    }
}

/// Architectures this build has been tested with on real models. Others may load (llama.cpp
/// knows many more); when one fails to load we say it is unsupported rather than "corrupt".
pub const TESTED_ARCHITECTURES: [&str; 6] = ["llama", "qwen2", "qwen3", "gemma3", "phi3", "mistral"];

/// The process-wide llama.cpp backend (initialised once; its logs go to `tracing`).
pub fn backend() -> &'static LlamaBackend {
    static BACKEND: OnceLock<LlamaBackend> = OnceLock::new();
    BACKEND.get_or_init(|| {
        llama_cpp_2::send_logs_to_tracing(llama_cpp_2::LogOptions::default());
        quiet_interrupt_logs();
        LlamaBackend::init().expect("llama.cpp backend initialises once")
    })
}

/// The log callback llama-cpp-2 installed (to `tracing`), which `filter_log` forwards to.
static FORWARD: OnceLock<(llama_cpp_sys_2::ggml_log_callback, usize)> = OnceLock::new();

/// llama.cpp logs three errors and a warning per sequence when a step is aborted; the worker
/// aborts batch-only steps on purpose for interactive arrivals (see `worker::Interrupt`), so
/// those lines ([`is_abort_line`]) are demoted to debug instead of flooding the log.
fn quiet_interrupt_logs() {
    let (mut cb, mut data): (llama_cpp_sys_2::ggml_log_callback, *mut std::ffi::c_void) = (None, std::ptr::null_mut());
    // SAFETY: plain reads/writes of llama.cpp's global logger, once, before any model exists.
    unsafe { llama_cpp_sys_2::llama_log_get(&mut cb, &mut data) };
    if cb.is_none() || FORWARD.set((cb, data as usize)).is_err() {
        return;
    }
    // SAFETY: as above; `filter_log` has the C callback's signature and takes no user data.
    unsafe { llama_cpp_sys_2::llama_log_set(Some(filter_log), std::ptr::null_mut()) };
}

thread_local! {
    /// While `load` runs on this thread: bytes of weight buffers llama.cpp allocated in host
    /// memory outside the file mapping (its "model buffer size" lines, e.g. `CPU_REPACK`).
    static COPIED_WEIGHTS: Cell<Option<u64>> = const { Cell::new(None) };
}

/// Bytes of a host weight buffer that is not the file mapping, from llama.cpp's
/// `load_tensors:   CPU_REPACK model buffer size =   596.53 MiB` line.
fn copied_buffer_bytes(msg: &str) -> Option<u64> {
    let (head, tail) = msg.split_once(" model buffer size = ")?;
    let name = head.split_whitespace().last()?;
    if !name.starts_with("CPU") || name == "CPU_Mapped" {
        return None;
    }
    let mib: f64 = tail.split_whitespace().next()?.parse().ok()?;
    Some((mib * 1024.0 * 1024.0).round() as u64)
}

/// A line llama.cpp logs only because a step was aborted (ggml status 1 = aborted; decode
/// returns 2), not because anything failed.
fn is_abort_line(msg: &str) -> bool {
    msg.contains("removing memory module entries")
        || msg.contains("graph_compute_async failed with error 1")
        || msg.contains("failed to compute graph, compute status: 1")
        || msg.contains("failed to decode, ret = 2")
}

extern "C" fn filter_log(
    level: llama_cpp_sys_2::ggml_log_level,
    text: *const std::ffi::c_char,
    _: *mut std::ffi::c_void,
) {
    if !text.is_null() {
        // SAFETY: llama.cpp passes a NUL-terminated message.
        let msg = unsafe { std::ffi::CStr::from_ptr(text) }.to_bytes();
        if let Some(bytes) = COPIED_WEIGHTS
            .with(Cell::get)
            .and_then(|_| copied_buffer_bytes(&String::from_utf8_lossy(msg)))
        {
            COPIED_WEIGHTS.with(|c| c.set(Some(c.get().unwrap_or(0) + bytes)));
        }
        if is_abort_line(&String::from_utf8_lossy(msg)) {
            tracing::debug!(target: "llama-cpp-2", "{}", String::from_utf8_lossy(msg).trim_end());
            return;
        }
    }
    if let Some((Some(cb), data)) = FORWARD.get() {
        // SAFETY: the callback and its data as llama-cpp-2 registered them (static state).
        unsafe { cb(level, text, *data as *mut std::ffi::c_void) };
    }
}

/// What a GGUF file says about its model.
#[derive(Debug, Clone, Serialize)]
pub struct ModelInfo {
    pub path: PathBuf,
    pub name: Option<String>,
    pub architecture: String,
    /// Context length the model was trained with.
    pub context_length: u32,
    pub n_params: u64,
    /// Bytes of weights (mapped from the file, not copied).
    pub weight_bytes: u64,
    /// Bytes of weights llama.cpp copied out of the mapping into host memory (repacked
    /// tensors; 0 with `repack` off). The mapping stays, so a model holds about
    /// `weight_bytes + copied_weight_bytes` of RAM.
    pub copied_weight_bytes: u64,
    pub n_layer: u32,
    pub n_head: u32,
    pub n_head_kv: u32,
    pub n_embd: u32,
    pub n_vocab: u32,
    pub chat_template: Option<String>,
    pub bos_token: Option<String>,
    pub eos_token: Option<String>,
}

impl ModelInfo {
    /// Bytes of f16 KV cache per token of context (K and V, every layer).
    pub fn kv_bytes_per_token(&self) -> u64 {
        let head_dim = (self.n_embd / self.n_head.max(1)) as u64;
        2 * self.n_layer as u64 * self.n_head_kv as u64 * head_dim * 2
    }
}

/// The first four bytes, before llama.cpp sees the file.
fn check_magic(path: &Path) -> Result<(), EngineError> {
    let invalid = |reason: String| EngineError::InvalidGguf {
        path: path.to_owned(),
        reason,
    };
    if !path.is_file() {
        return Err(EngineError::ModelNotFound(path.to_owned()));
    }
    let mut magic = [0u8; 4];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .map_err(|e| invalid(format!("cannot read header: {e}")))?;
    if &magic != b"GGUF" {
        return Err(invalid(format!("bad magic {magic:?}, expected \"GGUF\"")));
    }
    Ok(())
}

/// Parse the whole GGUF header (all metadata, e.g. a 50k-entry vocabulary) for a precise
/// error. Only run after llama.cpp failed to load the file: on the way to a good load it
/// would parse everything a second time (milliseconds on every cold load).
fn check_header(path: &Path) -> Result<String, EngineError> {
    let invalid = |reason: String| EngineError::InvalidGguf {
        path: path.to_owned(),
        reason,
    };
    check_magic(path)?;
    let gguf = llama_cpp_2::gguf::GgufContext::from_file(path)
        .ok_or_else(|| invalid("header or metadata is truncated or corrupted".into()))?;
    let idx = gguf.find_key("general.architecture");
    if idx < 0 {
        return Err(invalid("no `general.architecture` key".into()));
    }
    gguf.val_str(idx)
        .map(str::to_owned)
        .ok_or_else(|| invalid("`general.architecture` is not a string".into()))
}

/// Load a model file, memory-mapped, with `n_gpu_layers` offloaded when built with `cuda`.
///
/// `repack`: let llama.cpp's CPU backend copy the tensors it has faster kernels for (Q4_0,
/// Q4_K, IQ4_NL, Q8_0 on x86) into an interleaved layout in anonymous memory — faster
/// matrix products, but a second copy of those weights beside the mapping. Off, every CPU
/// tensor stays in the file mapping (page cache the kernel can share and drop).
fn load(path: &Path, n_gpu_layers: u32, repack: bool) -> Result<(LlamaModel, ModelInfo), EngineError> {
    check_magic(path)?;
    let params = LlamaModelParams::default()
        .with_use_mmap(true)
        .with_n_gpu_layers(n_gpu_layers);
    let backend = backend();
    COPIED_WEIGHTS.with(|c| c.set(Some(0)));
    let loaded = match repack || n_gpu_layers > 0 || !crate::raw::model_handle_is_one_pointer() {
        true => LlamaModel::load_from_file(backend, path, &params).ok(),
        false => crate::raw::model_in_mapping(path),
    };
    let copied_weight_bytes = COPIED_WEIGHTS.with(|c| c.take()).unwrap_or(0);
    let model = match loaded {
        Some(m) => m,
        None => {
            // Say why: a bad header, an architecture we have not tested, or a failed load.
            let arch = check_header(path)?;
            return Err(if TESTED_ARCHITECTURES.contains(&arch.as_str()) {
                EngineError::LoadFailed(path.to_owned())
            } else {
                EngineError::UnsupportedArchitecture {
                    path: path.to_owned(),
                    arch,
                }
            });
        }
    };
    let arch = model.meta_val_str("general.architecture").unwrap_or_default();
    let piece = |t: LlamaToken| -> Option<String> {
        (t.0 >= 0).then(|| String::from_utf8_lossy(&model.vocab().token_to_piece(t, true, None)).into_owned())
    };
    let info = ModelInfo {
        path: path.to_owned(),
        name: model.meta_val_str("general.name").ok(),
        architecture: arch,
        context_length: model.n_ctx_train(),
        n_params: model.n_params(),
        weight_bytes: model.size(),
        copied_weight_bytes,
        n_layer: model.n_layer(),
        n_head: model.n_head(),
        n_head_kv: model.n_head_kv(),
        n_embd: model.n_embd() as u32,
        n_vocab: model.n_vocab() as u32,
        chat_template: model.chat_template(None).ok().and_then(|t| t.to_string().ok()),
        bos_token: piece(model.vocab().bos()),
        eos_token: piece(model.vocab().eos()),
    };
    Ok((model, info))
}

#[cfg(test)]
mod tests {
    use super::{copied_buffer_bytes, is_abort_line};

    #[test]
    fn only_abort_lines_are_demoted() {
        assert!(is_abort_line(
            "ggml_backend_sched_graph_compute_async failed with error 1\n"
        ));
        assert!(is_abort_line(
            "process_ubatch: failed to compute graph, compute status: 1\n"
        ));
        assert!(is_abort_line("llama_decode: failed to decode, ret = 2\n"));
        assert!(is_abort_line(
            "decode: removing memory module entries for seq_id = 3, pos = [10, +inf)\n"
        ));
        // Real failures stay errors.
        assert!(!is_abort_line(
            "ggml_backend_sched_graph_compute_async failed with error -1\n"
        ));
        assert!(!is_abort_line("failed to compute graph, compute status: -2\n"));
        assert!(!is_abort_line("llama_decode: failed to decode, ret = -3\n"));
        assert!(!is_abort_line("failed to decode, ret = 1\n"));
    }

    #[test]
    fn copied_weight_buffers_are_read_from_llama_cpp_lines() {
        let mib: f64 = 1024.0 * 1024.0;
        assert_eq!(
            copied_buffer_bytes("load_tensors:   CPU_REPACK model buffer size =   596.53 MiB\n"),
            Some((596.53 * mib).round() as u64)
        );
        // The mapping itself and device buffers are not host copies.
        assert_eq!(
            copied_buffer_bytes("load_tensors:   CPU_Mapped model buffer size =  1059.00 MiB\n"),
            None
        );
        assert_eq!(
            copied_buffer_bytes("load_tensors:        CUDA0 model buffer size =   900.00 MiB\n"),
            None
        );
        assert_eq!(
            copied_buffer_bytes("llama_context:        CPU compute buffer size =    50.95 MiB\n"),
            None
        );
        assert_eq!(
            copied_buffer_bytes("load_tensors:   CPU_REPACK model buffer size = lots MiB\n"),
            None
        );
    }
}
