//! The file's vocabulary in one place: its tensors by role ([`TensorKind`], [`TensorId`])
//! and the mapping from tensor names to them, the safetensors dtypes ([`Dtype`]) and the
//! `__metadata__` keys ([`MetaKey`]) of docs/FORMAT.md. Depends on nothing else in the
//! crate, so every stage and the errors can name things the way the file does.
use core::fmt;

/// Longest tensor name (UTF-8 bytes, after unescaping) the loader compares; a longer name
/// is an unused tensor.
pub const MAX_NAME: usize = 96;

/// A field-less enum and its table `$table`, one row a variant in declaration order (so
/// `$table[v as usize]` is `v`'s row): the variant, its spelling in the file (also its
/// doc) and one fact about it. Each name is written once.
macro_rules! spelled {
    ($(#[$a:meta])* $name:ident, $table:ident: $fact:ty {
        $($(#[$va:meta])* $v:ident = $s:literal, $x:expr;)*
    }) => {
        $(#[$a])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $(#[doc = concat!("`", $s, "`")] $(#[$va])* $v,)*
        }
        const $table: &[($name, &str, $fact)] = &[$(($name::$v, $s, $x),)*];
    };
}

spelled! {
    /// The tensors of docs/FORMAT.md, by role (the per-layer ones under `h.{i}.`), and
    /// whether each is a 2-D weight (one that may be quantised).
    TensorKind, KINDS: bool {
        Wte = "wte.weight", true;
        Wpe = "wpe.weight", true;
        Ln1Weight = "ln_1.weight", false;
        Ln1Bias = "ln_1.bias", false;
        AttnWeight = "attn.c_attn.weight", true;
        AttnBias = "attn.c_attn.bias", false;
        AttnProjWeight = "attn.c_proj.weight", true;
        AttnProjBias = "attn.c_proj.bias", false;
        Ln2Weight = "ln_2.weight", false;
        Ln2Bias = "ln_2.bias", false;
        FcWeight = "mlp.c_fc.weight", true;
        FcBias = "mlp.c_fc.bias", false;
        MlpProjWeight = "mlp.c_proj.weight", true;
        MlpProjBias = "mlp.c_proj.bias", false;
        LnFWeight = "ln_f.weight", false;
        LnFBias = "ln_f.bias", false;
        /// (untied models only)
        LmHead = "lm_head.weight", true;
        /// A tensor whose name folio does not use (ignored, but its offsets are checked).
        Other = "(unused tensor)", false;
    }
}

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
        KINDS.get(self as usize).map_or("", |n| n.1)
    }

    /// True for the 2-D weights (the ones that may be quantised).
    pub fn is_matrix(self) -> bool {
        KINDS.get(self as usize).is_some_and(|n| n.2)
    }
}

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
    let &(kind, ..) = KINDS.iter().find(|(k, n, _)| {
        *n == suffix && k.per_layer() == layer.is_some() && *k != TensorKind::Other
    })?;
    let layer = layer.unwrap_or(0);
    (!scale || kind.is_matrix()).then_some(TensorId { kind, layer, scale })
}

spelled! {
    /// A safetensors dtype, and its size in bytes.
    Dtype, DTYPES: u8 {
        Bool = "BOOL", 1;
        U8 = "U8", 1;
        I8 = "I8", 1;
        F8E5M2 = "F8_E5M2", 1;
        F8E4M3 = "F8_E4M3", 1;
        I16 = "I16", 2;
        U16 = "U16", 2;
        F16 = "F16", 2;
        BF16 = "BF16", 2;
        I32 = "I32", 4;
        U32 = "U32", 4;
        F32 = "F32", 4;
        F64 = "F64", 8;
        I64 = "I64", 8;
        U64 = "U64", 8;
    }
}

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

spelled! {
    /// A `__metadata__` key of docs/FORMAT.md (in the order a writer lists them), and what
    /// a valid value looks like (for error messages).
    MetaKey, KEYS: &str {
        Format = "folio.format", "\"2\"";
        VocabSize = "folio.vocab_size", SIZE;
        BlockSize = "folio.block_size", SIZE;
        NEmbd = "folio.n_embd", SIZE;
        NHead = "folio.n_head", SIZE;
        NLayer = "folio.n_layer", SIZE;
        LayerNormEps = "folio.layer_norm_eps", "a finite decimal number >= 0";
        Activation = "folio.activation", "\"gelu_tanh\"";
        TiedEmbeddings = "folio.tied_embeddings", "\"true\" or \"false\"";
        /// (token `i` is the string's `i`-th character)
        Vocab = "folio.vocab", "a string";
        /// (informational)
        Dtype = "folio.dtype", "a string";
        /// (informational JSON, for std tools)
        Train = "folio.train", "a string";
    }
}

/// What a valid size looks like.
const SIZE: &str = "a positive decimal integer without leading zeros";

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
    pub fn expected(self) -> &'static str {
        KEYS.get(self as usize).map_or("", |k| k.2)
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
