//! Every way loading or running a model can fail: small `Copy` enums, no heap payloads.
//!
//! Payloads name things the way the file does: tensors by [`TensorId`]
//! (`h.3.attn.c_attn.weight_scale`), metadata keys by [`MetaKey`] (`folio.n_embd`).
//! Each variant is declared on one row with its message, which is also its doc.
use crate::names::{Dtype, MetaKey, TensorId};
use core::fmt;

/// An enum and its `Display`, one row a variant: `Variant { fields } => "message", args`,
/// the message a `write!` format over the fields (and the variant's doc).
macro_rules! messages {
    ($(#[$a:meta])* $name:ident {
        $($(#[$va:meta])* $v:ident $({ $($f:ident: $t:ty),* })? => $msg:literal $(, $arg:expr)*;)*
    }) => {
        $(#[$a])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        #[allow(missing_docs)] // fields: named in the message
        pub enum $name {
            $(#[doc = $msg] $(#[$va])* $v $({ $($f: $t),* })?,)*
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match *self {
                    $(Self::$v $({ $($f),* })? => write!(f, $msg $(, $arg)*),)*
                }
            }
        }
    };
}

/// A sampler setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SamplerParam {
    /// `temperature`: must be finite and `>= 0`.
    Temperature,
    /// `top_p`: must be in `(0, 1]`.
    TopP,
}

messages! {
    /// What is wrong with one tensor (see [`Error::Tensor`]).
    TensorProblem {
        /// (a tensor the config requires)
        Missing => "is missing";
        /// (a gap, an overlap, or entries out of data order)
        NotContiguous =>
            "does not begin where the previous tensor ends (format 2 stores tensors back to back, in header order)";
        /// (or `begin > end`)
        OutOfRange => "has data_offsets outside the data section";
        /// (`end - begin` is not the element count times the dtype size)
        Length => "has data_offsets whose length does not match shape and dtype";
        /// (one its role does not allow)
        Dtype { dtype: Dtype } => "has unexpected dtype {}", dtype.as_str();
        /// (the config implies another)
        Shape => "has the wrong shape for the config";
        /// (its offset is not a multiple of its element size)
        Misaligned => "is not aligned to its element size";
        /// (the matrix's columns)
        QuantCols { cols: u32 } => "is quantised but has {cols} columns, not a multiple of 32";
        ScaleWithoutWeight => "has a _scale but is not quantised (I8/U8)";
        WeightWithoutScale => "is quantised (I8/U8) but has no _scale";
    }
}

messages! {
    /// Everything that can go wrong in the runtime. Byte offsets are into the header
    /// JSON.
    #[non_exhaustive]
    Error {
        TooShort { len: usize } =>
            "file is {len} bytes, shorter than the 8-byte safetensors header length";
        HeaderTooLong { header_len: u64, file_len: usize } =>
            "header length {header_len} runs past the end of the {file_len}-byte file";
        HeaderNotUtf8 => "header is not UTF-8";
        /// (or not the safetensors shape of JSON)
        BadJson { offset: usize } => "header is not valid safetensors JSON (at byte {offset})";
        /// (none that safetensors defines)
        UnknownDtype { offset: usize } => "unknown tensor dtype (header byte {offset})";
        /// (tensor names, `__metadata__`, its keys; `offset`: of the second occurrence)
        DuplicateName { offset: usize } =>
            "a key appears twice in one header object (at byte {offset})";
        /// (more than [`crate::MAX_TENSORS`])
        TooManyTensors { max: u32 } => "more than {max} tensors in the header";
        /// (more than [`crate::header::MAX_METADATA`])
        TooManyMetadata { max: u32 } => "more than {max} metadata keys";
        /// (a tensor name or metadata key longer than [`crate::header::MAX_KEY`])
        KeyTooLong { offset: usize, max: u32 } =>
            "a key is longer than {max} bytes (header byte {offset})";
        /// (or there is no `__metadata__` at all)
        MissingMetadata { key: MetaKey } => "missing metadata key {}", key.as_str();
        Format1 =>
            "this is a format 1 file; upgrade it with `exporter convert FILE --out NEW_FILE`";
        /// (see [`MetaKey::expected`])
        BadMetadata { key: MetaKey } => "metadata {} must be {}", key.as_str(), key.expected();
        HeadsDoNotDivide { n_embd: u32, n_head: u32 } =>
            "n_embd {n_embd} is not a multiple of n_head {n_head}";
        /// (a fixed capacity, see the crate docs, or `u32::MAX` where the limit is an
        /// overflow of the sizes derived from it)
        ConfigTooLarge { key: MetaKey, max: u32 } =>
            "metadata {} exceeds the runtime capacity {max}", key.as_str();
        VocabLength { expected: u32, found: u32 } =>
            "folio.vocab has {found} characters, folio.vocab_size is {expected}";
        /// (`index`: the token id of the second occurrence)
        DuplicateVocab { index: u32, ch: char } => "folio.vocab character {index} repeats {ch:?}";
        /// (`offset`: `8 + header length`; tensors are viewed in place)
        DataMisaligned { offset: usize } =>
            "the tensor data (file offset {offset}) is not at a 4-byte aligned address: place the file so that it is (the folio CLI copies such files)";
        TrailingData { bytes: usize } => "{bytes} bytes of data follow the last tensor";
        /// (`(unused tensor)` for a name folio does not know)
        Tensor { tensor: TensorId, problem: TensorProblem } => "tensor {tensor} {problem}";
        /// (see [`crate::Model::session_bytes`])
        SessionTooSmall { needed: usize, got: usize } =>
            "session memory is {got} bytes, {needed} needed";
        /// (for the session's f32 buffers)
        BufferMisaligned => "session memory cannot be 4-byte aligned";
        TokenOutOfRange { token: u32, vocab_size: u32 } =>
            "token {token} is not below vocab_size {vocab_size}";
        PositionOutOfRange { pos: usize, block_size: usize } =>
            "position {pos} is not below block_size {block_size}";
        /// (`pos`: its index in the text, counted in characters)
        UnknownChar { ch: char, pos: usize } =>
            "character {ch:?} at position {pos} is not in the vocabulary";
        BadSamplerParam { param: SamplerParam } => "{}", match param {
            SamplerParam::Temperature => "temperature must be finite and >= 0",
            SamplerParam::TopP => "top_p must be in (0, 1]",
        };
        /// (an output or scratch buffer given by the caller; `needed` elements)
        BufferTooSmall { needed: usize } => "buffer too small: {needed} elements needed";
        /// (by [`crate::Generator::next`] before a non-empty prompt)
        EmptyPrompt => "the prompt is empty";
        /// (non-finite weights, or an overflow in the forward pass: no token can be drawn)
        NonFiniteLogit { token: u32 } =>
            "the logit of token {token} is NaN or infinite (the model's weights or activations are not finite)";
    }
}

impl core::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_is_small() {
        let size = core::mem::size_of::<Error>();
        assert!(size <= 24, "{size}");
    }
}
