//! Every way loading or running a model can fail: one small `Copy` enum, no heap payloads.
//!
//! Payloads name things the way the file does: tensors by [`TensorId`]
//! (`h.3.attn.c_attn.weight_scale`), metadata keys by [`MetaKey`] (`folio.n_embd`).
use crate::names::{Dtype, MetaKey, TensorId};
use core::fmt;

/// A sampler setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SamplerParam {
    /// `temperature`: must be finite and `>= 0`.
    Temperature,
    /// `top_p`: must be in `(0, 1]`.
    TopP,
}

/// What is wrong with one tensor (see [`Error::Tensor`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TensorProblem {
    /// A tensor the config requires is absent.
    Missing,
    /// Its data does not begin where the previous entry's ended (a gap, an overlap, or
    /// entries out of data order).
    NotContiguous,
    /// Its `data_offsets` lie outside the data section (or `begin > end`).
    OutOfRange,
    /// `end - begin` differs from the shape's element count times the dtype size.
    Length,
    /// A dtype its role does not allow.
    Dtype(Dtype),
    /// A shape other than the one the config implies.
    Shape,
    /// Its offset is not a multiple of its element size.
    Misaligned,
    /// It is quantised but its matrix has this many columns, not a multiple of 32.
    QuantCols(u32),
    /// A `NAME_scale` without a quantised (I8/U8) `NAME`.
    ScaleWithoutWeight,
    /// A quantised (I8/U8) `NAME` without its `NAME_scale`.
    WeightWithoutScale,
}

/// Everything that can go wrong in the runtime. A single payload is named in the
/// variant's doc; byte offsets are into the header JSON unless they say otherwise.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// The file (this many bytes) is shorter than the 8-byte header-length prefix.
    TooShort(usize),
    /// The header length runs past the end of the file.
    HeaderTooLong {
        /// Header length from the prefix.
        header_len: u64,
        /// File length in bytes.
        file_len: usize,
    },
    /// The header bytes are not UTF-8.
    HeaderNotUtf8,
    /// The header is not valid JSON, or not the safetensors shape of JSON (at this
    /// offset).
    BadJson(usize),
    /// A tensor's dtype string (its key at this offset) is none that safetensors defines.
    UnknownDtype(usize),
    /// A key appears twice in one JSON object (tensor names, `__metadata__`, its keys); the
    /// offset of the second occurrence.
    DuplicateName(usize),
    /// The header lists more tensors than [`crate::MAX_TENSORS`] (the capacity).
    TooManyTensors(u32),
    /// `__metadata__` has more keys than [`crate::header::MAX_METADATA`] (the capacity).
    TooManyMetadata(u32),
    /// A tensor name or metadata key is longer than [`crate::header::MAX_KEY`].
    KeyTooLong {
        /// Byte offset of the key.
        offset: usize,
        /// The limit in bytes.
        max: u32,
    },
    /// A required `__metadata__` key is absent (or there is no `__metadata__` at all).
    MissingMetadata(MetaKey),
    /// `folio.format` is `"1"`: the file predates format 2.
    Format1,
    /// A metadata value is not what docs/FORMAT.md allows (see [`MetaKey::expected`]).
    BadMetadata(MetaKey),
    /// `n_embd % n_head != 0`.
    HeadsDoNotDivide {
        /// `n_embd`.
        n_embd: u32,
        /// `n_head`.
        n_head: u32,
    },
    /// A size exceeds the runtime's fixed capacity (see the crate docs) or overflows the
    /// sizes derived from it.
    ConfigTooLarge {
        /// Which key.
        key: MetaKey,
        /// The largest value accepted (`u32::MAX` where the limit is arithmetic overflow).
        max: u32,
    },
    /// `folio.vocab` has a different number of characters than `vocab_size`.
    VocabLength {
        /// `vocab_size`.
        expected: u32,
        /// Characters in `folio.vocab`.
        found: u32,
    },
    /// A character appears twice in `folio.vocab`.
    DuplicateVocab {
        /// Token id of the second occurrence.
        index: u32,
        /// The character.
        ch: char,
    },
    /// The data section (at this file offset, `8 + header length`) does not start at a
    /// 4-byte aligned address, so its tensors cannot be viewed in place.
    DataMisaligned(usize),
    /// The data section continues (this many bytes) after the last tensor's data.
    TrailingData(usize),
    /// One tensor is wrong.
    Tensor {
        /// The tensor (`(unused tensor)` for a name folio does not know).
        tensor: TensorId,
        /// What is wrong with it.
        problem: TensorProblem,
    },
    /// The memory given to [`crate::Model::session`] is smaller than
    /// [`crate::Model::session_bytes`].
    SessionTooSmall {
        /// Bytes needed.
        needed: usize,
        /// Bytes given.
        got: usize,
    },
    /// Session memory cannot be aligned for its f32 buffers.
    BufferMisaligned,
    /// A token id is not below `vocab_size`.
    TokenOutOfRange {
        /// The token.
        token: u32,
        /// `vocab_size`.
        vocab_size: u32,
    },
    /// A position is not below `block_size`.
    PositionOutOfRange {
        /// The position.
        pos: usize,
        /// `block_size`.
        block_size: usize,
    },
    /// The text holds a character that is not in the vocabulary.
    UnknownChar {
        /// The character.
        ch: char,
        /// Its index in the text, counted in characters.
        pos: usize,
    },
    /// A sampler setting is out of range.
    BadSamplerParam(SamplerParam),
    /// An output or scratch buffer given by the caller is too short (this many elements
    /// needed).
    BufferTooSmall(usize),
    /// [`crate::Generator::next`] was called before a non-empty prompt.
    EmptyPrompt,
    /// The sampler was given a NaN or infinite logit (non-finite weights, or an overflow in
    /// the forward pass), the first at this token id: no token can be drawn from it.
    NonFiniteLogit(u32),
}

impl fmt::Display for TensorProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Missing => f.write_str("is missing"),
            Self::NotContiguous => f.write_str(
                "does not begin where the previous tensor ends (format 2 stores tensors back to back, in header order)",
            ),
            Self::OutOfRange => f.write_str("has data_offsets outside the data section"),
            Self::Length => f.write_str("has data_offsets whose length does not match shape and dtype"),
            Self::Dtype(d) => write!(f, "has unexpected dtype {}", d.as_str()),
            Self::Shape => f.write_str("has the wrong shape for the config"),
            Self::Misaligned => f.write_str("is not aligned to its element size"),
            Self::QuantCols(cols) => {
                write!(f, "is quantised but has {cols} columns, not a multiple of 32")
            }
            Self::ScaleWithoutWeight => f.write_str("has a _scale but is not quantised (I8/U8)"),
            Self::WeightWithoutScale => f.write_str("is quantised (I8/U8) but has no _scale"),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::TooShort(len) => write!(
                f,
                "file is {len} bytes, shorter than the 8-byte safetensors header length"
            ),
            Self::HeaderTooLong {
                header_len,
                file_len,
            } => write!(
                f,
                "header length {header_len} runs past the end of the {file_len}-byte file"
            ),
            Self::HeaderNotUtf8 => f.write_str("header is not UTF-8"),
            Self::BadJson(at) => write!(f, "header is not valid safetensors JSON (at byte {at})"),
            Self::UnknownDtype(at) => write!(f, "unknown tensor dtype (header byte {at})"),
            Self::DuplicateName(at) => {
                write!(f, "a key appears twice in one header object (at byte {at})")
            }
            Self::TooManyTensors(max) => write!(f, "more than {max} tensors in the header"),
            Self::TooManyMetadata(max) => write!(f, "more than {max} metadata keys"),
            Self::KeyTooLong { offset, max } => {
                write!(f, "a key is longer than {max} bytes (header byte {offset})")
            }
            Self::MissingMetadata(key) => write!(f, "missing metadata key {}", key.as_str()),
            Self::Format1 => f.write_str(
                "this is a format 1 file; upgrade it with `exporter convert FILE --out NEW_FILE`",
            ),
            Self::BadMetadata(key) => {
                write!(f, "metadata {} must be {}", key.as_str(), key.expected())
            }
            Self::HeadsDoNotDivide { n_embd, n_head } => {
                write!(f, "n_embd {n_embd} is not a multiple of n_head {n_head}")
            }
            Self::ConfigTooLarge { key, max } => write!(
                f,
                "metadata {} exceeds the runtime capacity {max}",
                key.as_str()
            ),
            Self::VocabLength { expected, found } => write!(
                f,
                "folio.vocab has {found} characters, folio.vocab_size is {expected}"
            ),
            Self::DuplicateVocab { index, ch } => {
                write!(f, "folio.vocab character {index} repeats {ch:?}")
            }
            Self::DataMisaligned(offset) => write!(
                f,
                "the tensor data (file offset {offset}) is not at a 4-byte aligned address: place the file so that it is (the folio CLI copies such files)"
            ),
            Self::TrailingData(bytes) => write!(f, "{bytes} bytes of data follow the last tensor"),
            Self::Tensor { tensor, problem } => write!(f, "tensor {tensor} {problem}"),
            Self::SessionTooSmall { needed, got } => {
                write!(f, "session memory is {got} bytes, {needed} needed")
            }
            Self::BufferMisaligned => f.write_str("session memory cannot be 4-byte aligned"),
            Self::TokenOutOfRange { token, vocab_size } => {
                write!(f, "token {token} is not below vocab_size {vocab_size}")
            }
            Self::PositionOutOfRange { pos, block_size } => {
                write!(f, "position {pos} is not below block_size {block_size}")
            }
            Self::UnknownChar { ch, pos } => write!(
                f,
                "character {ch:?} at position {pos} is not in the vocabulary"
            ),
            Self::BadSamplerParam(SamplerParam::Temperature) => {
                f.write_str("temperature must be finite and >= 0")
            }
            Self::BadSamplerParam(SamplerParam::TopP) => f.write_str("top_p must be in (0, 1]"),
            Self::BufferTooSmall(needed) => write!(f, "buffer too small: {needed} elements needed"),
            Self::EmptyPrompt => f.write_str("the prompt is empty"),
            Self::NonFiniteLogit(token) => write!(
                f,
                "the logit of token {token} is NaN or infinite (the model's weights or activations are not finite)"
            ),
        }
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
