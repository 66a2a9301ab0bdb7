//! The two places where rightsize reaches past llama-cpp-2's API into its private layouts.
//!
//! Why: llama-cpp-2 wraps llama.cpp's structs without setters for two things we need — the
//! context's abort callback (which lets an interactive arrival cut a batch-only step short,
//! see `worker::Interrupt`) and the model's `use_extra_bufts` switch (which keeps weights in
//! the file mapping instead of repacked copies, see `model`). Both wrappers are private
//! single-field structs around the raw llama.cpp value, so we build that value ourselves and
//! reinterpret it as the wrapper. Each reinterpretation is guarded: the layout is checked
//! first (size, alignment and, for the params, a field round trip), and when it does not
//! match the caller falls back to the plain API — the feature is lost, never memory safety.
//! Keeping both here means an upgrade of llama-cpp-2 has one file to re-check.

use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_sys_2::llama_context_params as RawParams;
use std::ffi::c_void;
use std::path::Path;

/// llama.cpp's abort callback: asked after every graph node; `true` stops the step.
pub(crate) type AbortCallback = extern "C" fn(*mut c_void) -> bool;

/// `params` with llama.cpp's abort callback set to `callback(data)`. llama-cpp-2 keeps the
/// raw `llama_context_params` in a private single-field struct without a setter for the
/// callback; the layout is checked at run time (a field round trip) and, should it ever not
/// match, the params are returned unchanged (with a warning) and steps are simply not
/// interruptible. `data` must outlive every context made from the returned params.
pub(crate) fn with_abort_callback(
    params: LlamaContextParams,
    callback: AbortCallback,
    data: *mut c_void,
) -> LlamaContextParams {
    if std::mem::size_of::<LlamaContextParams>() != std::mem::size_of::<RawParams>()
        || std::mem::align_of::<LlamaContextParams>() != std::mem::align_of::<RawParams>()
    {
        return params;
    }
    let probe = params
        .clone()
        .with_n_ctx(std::num::NonZeroU32::new(12_345))
        .with_n_seq_max(7)
        .with_n_threads(3);
    // SAFETY: same size and alignment (checked above), and every bit pattern of the plain-data
    // raw struct's integer fields is valid; the bytes are only trusted below after the probe's
    // known field values are read back through the raw type.
    let raw_probe: RawParams = unsafe { std::mem::transmute_copy(&probe) };
    if raw_probe.n_ctx != 12_345
        || raw_probe.n_seq_max != 7
        || raw_probe.n_threads != 3
        || raw_probe.abort_callback.is_some()
    {
        tracing::warn!("llama-cpp-2 context params layout not as expected: batch steps will not be interruptible");
        return params;
    }
    // SAFETY: as for the probe: the wrapper is exactly the raw struct (checked by the round
    // trip above), so its bytes are a valid `llama_context_params`.
    let mut raw: RawParams = unsafe { std::mem::transmute_copy(&params) };
    raw.abort_callback = Some(callback);
    raw.abort_callback_data = data;
    // `params` (dropped at the end) has no Drop glue: its plain-data bytes live on in `raw`
    // and nothing is freed twice.
    // SAFETY: the same layout as checked above; `raw` is a valid `llama_context_params`
    // (llama.cpp's own defaults plus llama-cpp-2's setters, and a callback that matches the
    // C signature).
    unsafe { std::mem::transmute::<RawParams, LlamaContextParams>(raw) }
}

type RawModel = std::ptr::NonNull<llama_cpp_sys_2::llama_model>;

/// Whether `LlamaModel` is exactly one model pointer, so `model_in_mapping` may build one.
pub(crate) fn model_handle_is_one_pointer() -> bool {
    let same = std::mem::size_of::<LlamaModel>() == std::mem::size_of::<RawModel>()
        && std::mem::align_of::<LlamaModel>() == std::mem::align_of::<RawModel>();
    if !same {
        tracing::warn!("llama-cpp-2's model handle is not a single pointer: weights are repacked as usual");
    }
    same
}

/// Load with llama.cpp's `use_extra_bufts` off, so no tensor is repacked out of the file
/// mapping. llama-cpp-2 has no setter for that field (and a CPU buffer-type override still
/// lets llama.cpp pick its repacking type), so the model is loaded through the raw API and
/// handed to `LlamaModel`, a single-pointer wrapper that frees it on drop. Call only when
/// [`model_handle_is_one_pointer`]; `None` when llama.cpp could not load the file.
pub(crate) fn model_in_mapping(path: &Path) -> Option<LlamaModel> {
    let c_path = std::ffi::CString::new(path.to_str()?).ok()?;
    // SAFETY: default params from llama.cpp itself, three plain fields changed; the path is a
    // NUL-terminated string that outlives the call.
    let raw = unsafe {
        let mut params = llama_cpp_sys_2::llama_model_default_params();
        params.use_extra_bufts = false;
        params.load_mode = llama_cpp_sys_2::LLAMA_LOAD_MODE_MMAP;
        params.n_gpu_layers = 0;
        llama_cpp_sys_2::llama_model_load_from_file(c_path.as_ptr(), params)
    };
    let raw = RawModel::new(raw)?;
    // SAFETY: same size and alignment as the one-field wrapper (`model_handle_is_one_pointer`,
    // which the caller checked), whose field is this pointer type; the model is now owned
    // (and freed) by the `LlamaModel` alone.
    let model: LlamaModel = unsafe { std::mem::transmute::<RawModel, LlamaModel>(raw) };
    // SAFETY: `raw` points at the live model `model` owns; both calls only read it.
    debug_assert_eq!(model.n_vocab(), unsafe {
        llama_cpp_sys_2::llama_vocab_n_tokens(llama_cpp_sys_2::llama_model_get_vocab(raw.as_ptr()))
    });
    Some(model)
}
