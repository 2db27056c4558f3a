//! The file's vocabulary in one place: its tensors by role ([`TensorKind`], [`TensorId`])
//! and the mapping from tensor names to them, the safetensors dtypes ([`Dtype`]) and the
//! `__metadata__` keys ([`MetaKey`]) of docs/FORMAT.md. Depends on nothing else in the
//! crate, so every stage and the errors can name things the way the file does.
use core::fmt;

/// Longest tensor name (UTF-8 bytes, after unescaping) the loader compares; a longer name
/// is an unused tensor.
pub const MAX_NAME: usize = 96;

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

/// Every kind but `Other` (in declaration order), its name without the `h.{i}.` prefix of
/// the per-layer kinds, and whether it is a 2-D weight.
const NAMES: [(TensorKind, &str, bool); 17] = [
    (TensorKind::Wte, "wte.weight", true),
    (TensorKind::Wpe, "wpe.weight", true),
    (TensorKind::Ln1Weight, "ln_1.weight", false),
    (TensorKind::Ln1Bias, "ln_1.bias", false),
    (TensorKind::AttnWeight, "attn.c_attn.weight", true),
    (TensorKind::AttnBias, "attn.c_attn.bias", false),
    (TensorKind::AttnProjWeight, "attn.c_proj.weight", true),
    (TensorKind::AttnProjBias, "attn.c_proj.bias", false),
    (TensorKind::Ln2Weight, "ln_2.weight", false),
    (TensorKind::Ln2Bias, "ln_2.bias", false),
    (TensorKind::FcWeight, "mlp.c_fc.weight", true),
    (TensorKind::FcBias, "mlp.c_fc.bias", false),
    (TensorKind::MlpProjWeight, "mlp.c_proj.weight", true),
    (TensorKind::MlpProjBias, "mlp.c_proj.bias", false),
    (TensorKind::LnFWeight, "ln_f.weight", false),
    (TensorKind::LnFBias, "ln_f.bias", false),
    (TensorKind::LmHead, "lm_head.weight", true),
];

/// Per-layer tensors: the kinds `Ln1Weight..=MlpProjBias`, in declaration order.
pub const LAYER_TENSORS: usize = 12;

impl TensorKind {
    /// True for the kinds that live under `h.{i}.`.
    pub const fn per_layer(self) -> bool {
        let k = self as usize;
        k >= TensorKind::Ln1Weight as usize && k <= TensorKind::MlpProjBias as usize
    }

    /// The name without the `h.{i}.` prefix (or the full name for global tensors).
    pub fn suffix(self) -> &'static str {
        NAMES.get(self as usize).map_or("(unused tensor)", |n| n.1)
    }

    /// True for the 2-D weights (the ones that may be quantised).
    pub fn is_matrix(self) -> bool {
        NAMES.get(self as usize).is_some_and(|n| n.2)
    }
}

impl TensorId {
    /// The id of `kind` in layer `layer` (not a scale).
    pub const fn new(kind: TensorKind, layer: usize) -> Self {
        TensorId {
            kind,
            layer: layer as u8,
            scale: false,
        }
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

/// The role of a (decoded) tensor name, `None` if folio does not use it. `NAME_scale` maps
/// to `NAME`'s id with `scale: true` (only for 2-D weights). Layer indices are decimal
/// without leading zeros, below 256.
pub fn tensor_id(name: &str) -> Option<TensorId> {
    let (base, scale) = match name.strip_suffix("_scale") {
        Some(b) => (b, true),
        None => (name, false),
    };
    let (suffix, layer) = match base.strip_prefix("h.") {
        Some(rest) => {
            let (num, suffix) = rest.split_once('.')?;
            let digits = num.bytes().all(|b| b.is_ascii_digit());
            if !digits || num.is_empty() || (num.len() > 1 && num.starts_with('0')) {
                return None;
            }
            (suffix, Some(num.parse::<u8>().ok()?))
        }
        None => (base, None),
    };
    let per_layer = layer.is_some();
    let &(kind, ..) = NAMES
        .iter()
        .find(|(k, n, _)| *n == suffix && k.per_layer() == per_layer)?;
    let layer = layer.unwrap_or(0);
    (!scale || kind.is_matrix()).then_some(TensorId { kind, layer, scale })
}

/// A safetensors dtype.
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

/// Each dtype (in declaration order), as safetensors spells it, and its size in bytes.
const DTYPES: [(Dtype, &str, u8); 15] = [
    (Dtype::Bool, "BOOL", 1),
    (Dtype::U8, "U8", 1),
    (Dtype::I8, "I8", 1),
    (Dtype::F8E5M2, "F8_E5M2", 1),
    (Dtype::F8E4M3, "F8_E4M3", 1),
    (Dtype::I16, "I16", 2),
    (Dtype::U16, "U16", 2),
    (Dtype::F16, "F16", 2),
    (Dtype::BF16, "BF16", 2),
    (Dtype::I32, "I32", 4),
    (Dtype::U32, "U32", 4),
    (Dtype::F32, "F32", 4),
    (Dtype::F64, "F64", 8),
    (Dtype::I64, "I64", 8),
    (Dtype::U64, "U64", 8),
];

impl Dtype {
    /// Bytes per element.
    pub fn size(self) -> usize {
        DTYPES.get(self as usize).map_or(1, |d| d.2.into())
    }

    /// The dtype as safetensors spells it.
    pub fn as_str(self) -> &'static str {
        DTYPES.get(self as usize).map_or("", |d| d.1)
    }

    /// The dtype spelled `s` (after unescaping), if safetensors defines it.
    pub fn from_chars(s: impl Iterator<Item = char> + Clone) -> Option<Self> {
        DTYPES
            .iter()
            .find(|d| s.clone().eq(d.1.chars()))
            .map(|d| d.0)
    }
}

/// A `__metadata__` key of docs/FORMAT.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MetaKey {
    /// `folio.format`: `"2"`.
    Format,
    /// `folio.vocab_size`.
    VocabSize,
    /// `folio.block_size`.
    BlockSize,
    /// `folio.n_embd`.
    NEmbd,
    /// `folio.n_head`.
    NHead,
    /// `folio.n_layer`.
    NLayer,
    /// `folio.layer_norm_eps`.
    LayerNormEps,
    /// `folio.activation`: `"gelu_tanh"`.
    Activation,
    /// `folio.tied_embeddings`: `"true"` or `"false"`.
    TiedEmbeddings,
    /// `folio.vocab`: token `i` is the string's `i`-th character.
    Vocab,
    /// `folio.dtype` (informational).
    Dtype,
    /// `folio.train` (informational JSON, for std tools).
    Train,
}

/// Every key (in declaration order, the order a writer lists them) as the file spells it.
const KEYS: [(MetaKey, &str); 12] = [
    (MetaKey::Format, "folio.format"),
    (MetaKey::VocabSize, "folio.vocab_size"),
    (MetaKey::BlockSize, "folio.block_size"),
    (MetaKey::NEmbd, "folio.n_embd"),
    (MetaKey::NHead, "folio.n_head"),
    (MetaKey::NLayer, "folio.n_layer"),
    (MetaKey::LayerNormEps, "folio.layer_norm_eps"),
    (MetaKey::Activation, "folio.activation"),
    (MetaKey::TiedEmbeddings, "folio.tied_embeddings"),
    (MetaKey::Vocab, "folio.vocab"),
    (MetaKey::Dtype, "folio.dtype"),
    (MetaKey::Train, "folio.train"),
];

impl MetaKey {
    /// Every key, in the order a writer lists them.
    pub fn all() -> impl Iterator<Item = MetaKey> {
        KEYS.iter().map(|k| k.0)
    }

    /// The key as written in the file.
    pub fn as_str(self) -> &'static str {
        KEYS.get(self as usize).map_or("", |k| k.1)
    }

    /// What a valid value looks like (for error messages).
    pub const fn expected(self) -> &'static str {
        match self {
            Self::Format => "\"2\"",
            Self::LayerNormEps => "a finite decimal number >= 0",
            Self::Activation => "\"gelu_tanh\"",
            Self::TiedEmbeddings => "\"true\" or \"false\"",
            Self::Vocab | Self::Dtype | Self::Train => "a string",
            _ => "a positive decimal integer without leading zeros",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::ToString;

    #[test]
    fn names_resolve() {
        let id = |kind, layer, scale| Some(TensorId { kind, layer, scale });
        assert_eq!(tensor_id("wte.weight"), id(TensorKind::Wte, 0, false));
        assert_eq!(
            tensor_id("h.12.mlp.c_proj.bias"),
            id(TensorKind::MlpProjBias, 12, false)
        );
        assert_eq!(
            tensor_id("h.0.attn.c_attn.weight_scale"),
            id(TensorKind::AttnWeight, 0, true)
        );
        assert_eq!(
            tensor_id("lm_head.weight_scale"),
            id(TensorKind::LmHead, 0, true)
        );
        for other in [
            "h.01.ln_1.weight",
            "h.256.ln_1.weight",
            "h..ln_1.weight",
            "h.x.ln_1.weight",
            "h.+1.ln_1.weight",
            "ln_f.weight_scale",
            "wte",
            "h.0.attn.bias",
            "h.0.ln_1.bias_scale",
        ] {
            assert_eq!(tensor_id(other), None, "{other}");
        }
    }

    #[test]
    fn ids_display_as_file_names() {
        for name in [
            "h.3.attn.c_attn.weight_scale",
            "wte.weight",
            "h.15.ln_2.bias",
        ] {
            assert_eq!(tensor_id(name).unwrap().to_string(), name);
        }
    }
}
