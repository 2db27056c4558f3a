//! Every way loading or running a model can fail: one small `Copy` enum, no heap payloads.
//!
//! Tensors are named in payloads by a [`TensorId`] (kind, layer, scale flag), metadata keys by
//! [`MetaKey`], config fields by [`ConfigField`], sampler knobs by [`SamplerParam`]; `Display`
//! spells them the way the file does (`h.3.attn.c_attn.weight_scale`, `folio.config`, ...).
use core::fmt;

/// A model tensor, as the loader knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TensorId {
    /// Which tensor of the GPT-2 layout.
    pub kind: TensorKind,
    /// Layer index for per-layer tensors (`h.{layer}.…`), 0 otherwise.
    pub layer: u8,
    /// True for the `NAME_scale` companion of a quantised `NAME`.
    pub scale: bool,
}

/// The tensors of docs/FORMAT.md, by role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TensorKind {
    /// `wte.weight` `[V, C]`.
    Wte,
    /// `wpe.weight` `[T, C]`.
    Wpe,
    /// `h.{i}.ln_1.weight` `[C]`.
    Ln1Weight,
    /// `h.{i}.ln_1.bias` `[C]`.
    Ln1Bias,
    /// `h.{i}.attn.c_attn.weight` `[3C, C]`.
    AttnWeight,
    /// `h.{i}.attn.c_attn.bias` `[3C]`.
    AttnBias,
    /// `h.{i}.attn.c_proj.weight` `[C, C]`.
    AttnProjWeight,
    /// `h.{i}.attn.c_proj.bias` `[C]`.
    AttnProjBias,
    /// `h.{i}.ln_2.weight` `[C]`.
    Ln2Weight,
    /// `h.{i}.ln_2.bias` `[C]`.
    Ln2Bias,
    /// `h.{i}.mlp.c_fc.weight` `[4C, C]`.
    FcWeight,
    /// `h.{i}.mlp.c_fc.bias` `[4C]`.
    FcBias,
    /// `h.{i}.mlp.c_proj.weight` `[C, 4C]`.
    MlpProjWeight,
    /// `h.{i}.mlp.c_proj.bias` `[C]`.
    MlpProjBias,
    /// `ln_f.weight` `[C]`.
    LnFWeight,
    /// `ln_f.bias` `[C]`.
    LnFBias,
    /// `lm_head.weight` `[V, C]` (untied models only).
    LmHead,
    /// A tensor whose name folio does not use (ignored, but its offsets are still checked).
    Other,
}

impl TensorKind {
    /// True for the kinds that live under `h.{i}.`.
    pub const fn per_layer(self) -> bool {
        !matches!(
            self,
            Self::Wte | Self::Wpe | Self::LnFWeight | Self::LnFBias | Self::LmHead | Self::Other
        )
    }

    /// The name without the `h.{i}.` prefix (or the full name for global tensors).
    pub const fn suffix(self) -> &'static str {
        match self {
            Self::Wte => "wte.weight",
            Self::Wpe => "wpe.weight",
            Self::Ln1Weight => "ln_1.weight",
            Self::Ln1Bias => "ln_1.bias",
            Self::AttnWeight => "attn.c_attn.weight",
            Self::AttnBias => "attn.c_attn.bias",
            Self::AttnProjWeight => "attn.c_proj.weight",
            Self::AttnProjBias => "attn.c_proj.bias",
            Self::Ln2Weight => "ln_2.weight",
            Self::Ln2Bias => "ln_2.bias",
            Self::FcWeight => "mlp.c_fc.weight",
            Self::FcBias => "mlp.c_fc.bias",
            Self::MlpProjWeight => "mlp.c_proj.weight",
            Self::MlpProjBias => "mlp.c_proj.bias",
            Self::LnFWeight => "ln_f.weight",
            Self::LnFBias => "ln_f.bias",
            Self::LmHead => "lm_head.weight",
            Self::Other => "(unused tensor)",
        }
    }

    /// True for the 2-D weights (the ones that may be quantised).
    pub const fn is_matrix(self) -> bool {
        matches!(
            self,
            Self::Wte
                | Self::Wpe
                | Self::AttnWeight
                | Self::AttnProjWeight
                | Self::FcWeight
                | Self::MlpProjWeight
                | Self::LmHead
        )
    }
}

impl fmt::Display for TensorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.kind.per_layer() {
            write!(f, "h.{}.", self.layer)?;
        }
        f.write_str(self.kind.suffix())?;
        if self.scale {
            f.write_str("_scale")?;
        }
        Ok(())
    }
}

/// A required `__metadata__` key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MetaKey {
    /// `folio.format`.
    Format,
    /// `folio.config`.
    Config,
    /// `folio.vocab`.
    Vocab,
}

impl MetaKey {
    /// The key as written in the file.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Format => "folio.format",
            Self::Config => "folio.config",
            Self::Vocab => "folio.vocab",
        }
    }
}

/// A field of `folio.config`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConfigField {
    /// `vocab_size`.
    VocabSize,
    /// `block_size`.
    BlockSize,
    /// `n_embd`.
    NEmbd,
    /// `n_head`.
    NHead,
    /// `n_layer`.
    NLayer,
    /// `layer_norm_eps`.
    LayerNormEps,
    /// `activation`.
    Activation,
    /// `tied_embeddings`.
    TiedEmbeddings,
}

impl ConfigField {
    /// The field name as written in `folio.config`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::VocabSize => "vocab_size",
            Self::BlockSize => "block_size",
            Self::NEmbd => "n_embd",
            Self::NHead => "n_head",
            Self::NLayer => "n_layer",
            Self::LayerNormEps => "layer_norm_eps",
            Self::Activation => "activation",
            Self::TiedEmbeddings => "tied_embeddings",
        }
    }
}

/// A sampler setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SamplerParam {
    /// `temperature`: must be finite and `>= 0`.
    Temperature,
    /// `top_p`: must be in `(0, 1]`.
    TopP,
}

/// A safetensors dtype string as found in the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(missing_docs)]
pub enum Dtype {
    Bool,
    U8,
    I8,
    F8E5M2,
    F8E4M3,
    I16,
    U16,
    F16,
    BF16,
    I32,
    U32,
    F32,
    F64,
    I64,
    U64,
}

impl Dtype {
    /// Bytes per element.
    pub const fn size(self) -> usize {
        match self {
            Self::Bool | Self::U8 | Self::I8 | Self::F8E5M2 | Self::F8E4M3 => 1,
            Self::I16 | Self::U16 | Self::F16 | Self::BF16 => 2,
            Self::I32 | Self::U32 | Self::F32 => 4,
            Self::F64 | Self::I64 | Self::U64 => 8,
        }
    }

    /// The dtype as safetensors spells it.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Bool => "BOOL",
            Self::U8 => "U8",
            Self::I8 => "I8",
            Self::F8E5M2 => "F8_E5M2",
            Self::F8E4M3 => "F8_E4M3",
            Self::I16 => "I16",
            Self::U16 => "U16",
            Self::F16 => "F16",
            Self::BF16 => "BF16",
            Self::I32 => "I32",
            Self::U32 => "U32",
            Self::F32 => "F32",
            Self::F64 => "F64",
            Self::I64 => "I64",
            Self::U64 => "U64",
        }
    }
}

/// Everything that can go wrong in the runtime.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// The file is shorter than the 8-byte header-length prefix.
    TooShort {
        /// File length in bytes.
        len: usize,
    },
    /// The header length runs past the end of the file.
    HeaderTooLong {
        /// Header length from the prefix.
        header_len: u64,
        /// File length in bytes.
        file_len: usize,
    },
    /// The header bytes are not UTF-8.
    HeaderNotUtf8,
    /// The header is not valid JSON, or not the safetensors shape of JSON.
    BadJson {
        /// Byte offset into the header where reading stopped.
        offset: usize,
    },
    /// A tensor's dtype string is none that safetensors defines.
    UnknownDtype {
        /// Byte offset into the header of the dtype value.
        offset: usize,
    },
    /// Two tensors (or two metadata entries) share one name.
    DuplicateName {
        /// Byte offset into the header of the second occurrence.
        offset: usize,
    },
    /// A required `__metadata__` key is absent (or there is no `__metadata__` at all).
    MissingMetadata {
        /// Which key.
        key: MetaKey,
    },
    /// A metadata value that should hold JSON (`folio.config`, `folio.vocab`) does not parse.
    BadMetadataJson {
        /// Which key.
        key: MetaKey,
        /// Character offset into the decoded value where reading stopped.
        offset: usize,
    },
    /// `folio.format` is not `"1"`.
    UnsupportedFormat,
    /// A `folio.config` field is missing, of the wrong JSON type, zero, or negative.
    BadConfig {
        /// Which field.
        field: ConfigField,
    },
    /// `activation` is not `"gelu_tanh"`.
    BadActivation,
    /// `n_embd % n_head != 0`.
    HeadsDoNotDivide {
        /// `n_embd`.
        n_embd: u32,
        /// `n_head`.
        n_head: u32,
    },
    /// A quantised matrix has a column count that is not a multiple of 32.
    QuantCols {
        /// The matrix.
        tensor: TensorId,
        /// Its column count.
        cols: u32,
    },
    /// A config value exceeds the runtime's fixed capacity (see the crate docs) or overflows
    /// the sizes derived from it.
    ConfigTooLarge {
        /// Which field.
        field: ConfigField,
        /// The largest value accepted (`u32::MAX` where the limit is arithmetic overflow).
        max: u32,
    },
    /// The header lists more tensors than [`crate::MAX_TENSORS`].
    TooManyTensors {
        /// The capacity.
        max: u32,
    },
    /// `folio.vocab` has a different length than `vocab_size`.
    VocabLength {
        /// `vocab_size`.
        expected: u32,
        /// Entries in `folio.vocab`.
        found: u32,
    },
    /// A `folio.vocab` entry is not a string of exactly one character.
    BadVocabEntry {
        /// Token id of the entry.
        index: u32,
    },
    /// A character appears twice in `folio.vocab`.
    DuplicateVocab {
        /// Token id of the second occurrence.
        index: u32,
        /// The character.
        ch: char,
    },
    /// A required tensor is absent.
    MissingTensor {
        /// The tensor.
        tensor: TensorId,
    },
    /// A tensor has a dtype its role does not allow.
    UnexpectedDtype {
        /// The tensor.
        tensor: TensorId,
        /// The dtype found.
        dtype: Dtype,
    },
    /// A tensor's shape differs from the one the config implies.
    WrongShape {
        /// The tensor.
        tensor: TensorId,
    },
    /// A tensor's offset is not a multiple of its element size (from the data buffer start).
    Misaligned {
        /// The tensor.
        tensor: TensorId,
    },
    /// The bytes handed to the loader do not start at a 4-byte aligned address, or the data
    /// buffer starts at an offset that breaks the alignment of its tensors.
    BufferMisaligned,
    /// A tensor's `data_offsets` lie outside the data buffer (or `begin > end`).
    OffsetsOutOfRange {
        /// The tensor.
        tensor: TensorId,
    },
    /// Two tensors' byte ranges overlap.
    OffsetsOverlap {
        /// One tensor.
        a: TensorId,
        /// The other.
        b: TensorId,
    },
    /// `end - begin` differs from the shape's element count times the dtype size.
    OffsetsLength {
        /// The tensor.
        tensor: TensorId,
    },
    /// A `NAME_scale` tensor without a quantised (I8/U8) `NAME`.
    ScaleWithoutWeight {
        /// The weight `NAME` (not the scale).
        tensor: TensorId,
    },
    /// A quantised (I8/U8) `NAME` without its `NAME_scale`.
    WeightWithoutScale {
        /// The weight.
        tensor: TensorId,
    },
    /// The memory given to [`crate::Model::session`] is smaller than
    /// [`crate::Model::session_bytes`].
    SessionTooSmall {
        /// Bytes needed.
        needed: usize,
        /// Bytes given.
        got: usize,
    },
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
    BadSamplerParam {
        /// Which setting.
        param: SamplerParam,
    },
    /// An output or scratch buffer given by the caller is too short.
    BufferTooSmall {
        /// Elements needed.
        needed: usize,
    },
    /// [`crate::Generator::next`] was called before a non-empty prompt.
    EmptyPrompt,
    /// The sampler was given a NaN or infinite logit (non-finite weights, or an overflow in
    /// the forward pass): no token can be drawn from it.
    NonFiniteLogit {
        /// Token id of the first non-finite logit.
        token: u32,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::TooShort { len } => write!(
                f,
                "file is {len} bytes, shorter than the 8-byte safetensors header length"
            ),
            Self::HeaderTooLong {
                header_len,
                file_len,
            } => {
                write!(
                    f,
                    "header length {header_len} runs past the end of the {file_len}-byte file"
                )
            }
            Self::HeaderNotUtf8 => f.write_str("header is not UTF-8"),
            Self::BadJson { offset } => {
                write!(f, "header is not valid safetensors JSON (at byte {offset})")
            }
            Self::UnknownDtype { offset } => {
                write!(f, "unknown tensor dtype (header byte {offset})")
            }
            Self::DuplicateName { offset } => {
                write!(f, "duplicate name in the header (at byte {offset})")
            }
            Self::MissingMetadata { key } => write!(f, "missing metadata key {}", key.as_str()),
            Self::BadMetadataJson { key, offset } => {
                write!(
                    f,
                    "metadata {} is not valid JSON (at character {offset})",
                    key.as_str()
                )
            }
            Self::UnsupportedFormat => f.write_str("folio.format is not \"1\""),
            Self::BadConfig { field } => {
                write!(
                    f,
                    "folio.config field {} is missing, mistyped or out of range",
                    field.as_str()
                )
            }
            Self::BadActivation => f.write_str("folio.config activation is not \"gelu_tanh\""),
            Self::HeadsDoNotDivide { n_embd, n_head } => {
                write!(f, "n_embd {n_embd} is not a multiple of n_head {n_head}")
            }
            Self::QuantCols { tensor, cols } => write!(
                f,
                "{tensor} is quantised but has {cols} columns, not a multiple of 32"
            ),
            Self::ConfigTooLarge { field, max } => write!(
                f,
                "folio.config {} exceeds the runtime capacity {max}",
                field.as_str()
            ),
            Self::TooManyTensors { max } => write!(f, "more than {max} tensors in the header"),
            Self::VocabLength { expected, found } => write!(
                f,
                "folio.vocab has {found} entries, vocab_size is {expected}"
            ),
            Self::BadVocabEntry { index } => {
                write!(f, "folio.vocab entry {index} is not a one-character string")
            }
            Self::DuplicateVocab { index, ch } => {
                write!(f, "folio.vocab entry {index} repeats the character {ch:?}")
            }
            Self::MissingTensor { tensor } => write!(f, "missing tensor {tensor}"),
            Self::UnexpectedDtype { tensor, dtype } => {
                write!(f, "tensor {tensor} has unexpected dtype {}", dtype.as_str())
            }
            Self::WrongShape { tensor } => {
                write!(f, "tensor {tensor} has the wrong shape for the config")
            }
            Self::Misaligned { tensor } => {
                write!(f, "tensor {tensor} is not aligned to its element size")
            }
            Self::BufferMisaligned => f.write_str("model bytes are not 4-byte aligned in memory"),
            Self::OffsetsOutOfRange { tensor } => write!(
                f,
                "tensor {tensor} has data_offsets outside the data buffer"
            ),
            Self::OffsetsOverlap { a, b } => write!(f, "tensors {a} and {b} overlap"),
            Self::OffsetsLength { tensor } => write!(
                f,
                "tensor {tensor} data_offsets length does not match shape and dtype"
            ),
            Self::ScaleWithoutWeight { tensor } => {
                write!(f, "{tensor}_scale has no quantised {tensor}")
            }
            Self::WeightWithoutScale { tensor } => {
                write!(f, "quantised tensor {tensor} has no {tensor}_scale")
            }
            Self::SessionTooSmall { needed, got } => {
                write!(f, "session memory is {got} bytes, {needed} needed")
            }
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
            Self::BadSamplerParam { param } => match param {
                SamplerParam::Temperature => f.write_str("temperature must be finite and >= 0"),
                SamplerParam::TopP => f.write_str("top_p must be in (0, 1]"),
            },
            Self::BufferTooSmall { needed } => {
                write!(f, "buffer too small: {needed} elements needed")
            }
            Self::EmptyPrompt => f.write_str("the prompt is empty"),
            Self::NonFiniteLogit { token } => write!(
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
    use std::string::ToString;

    #[test]
    fn tensor_ids_display_as_file_names() {
        let id = TensorId {
            kind: TensorKind::AttnWeight,
            layer: 3,
            scale: true,
        };
        assert_eq!(id.to_string(), "h.3.attn.c_attn.weight_scale");
        let id = TensorId {
            kind: TensorKind::Wte,
            layer: 0,
            scale: false,
        };
        assert_eq!(id.to_string(), "wte.weight");
    }

    #[test]
    fn error_is_small() {
        assert!(
            core::mem::size_of::<Error>() <= 24,
            "{}",
            core::mem::size_of::<Error>()
        );
    }
}
