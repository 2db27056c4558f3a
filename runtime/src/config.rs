//! Stage 2: `folio.format` and `folio.config` → a validated [`Config`].
//!
//! The config is JSON inside a JSON string; it is read straight from the escaped metadata
//! value through [`crate::format::Unescape`], without a copy. Unknown fields are ignored.
use crate::error::{ConfigField, Error, MetaKey};
use crate::format::{EscSource, Reader};
use crate::{MAX_LAYERS, MAX_VOCAB};

/// Model hyper-parameters (docs/FORMAT.md), validated against the runtime's capacities.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Config {
    /// `V`: number of tokens (characters).
    pub vocab_size: usize,
    /// `T`: context length.
    pub block_size: usize,
    /// `C`: embedding width.
    pub n_embd: usize,
    /// `H`: attention heads.
    pub n_head: usize,
    /// Transformer blocks.
    pub n_layer: usize,
    /// LayerNorm epsilon.
    pub layer_norm_eps: f32,
    /// True when the output head is `wte.weight` (no `lm_head.weight`).
    pub tied_embeddings: bool,
}

/// Element counts of one session's buffers (see [`crate::Session`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SessionLayout {
    /// f32 elements: `x, xn, y, tmp (C each) + qkv (3C) + hb (4C) + scores (T) + logits (V)
    /// + probs (V) + xs (4C / 32)`.
    pub n_f32: usize,
    /// u32 elements: `idx (V) + history (T)`.
    pub n_u32: usize,
    /// f16 elements: KV cache `(n_layer, 2, T, C)`.
    pub n_f16: usize,
    /// i8 elements: `xq (4C)`, the int8 activations of the widest quantised matvec.
    pub n_i8: usize,
    /// Total bytes including 3 bytes of alignment slack.
    pub bytes: usize,
}

impl Config {
    /// `C / H`.
    pub fn head_size(&self) -> usize {
        self.n_embd / self.n_head.max(1)
    }

    /// Buffer sizes of a session; `None` on overflow.
    pub(crate) fn layout(&self) -> Option<SessionLayout> {
        let (c, t, v) = (self.n_embd, self.block_size, self.vocab_size);
        let n_i8 = c.checked_mul(4)?;
        let n_f32 = c
            .checked_mul(11)?
            .checked_add(t)?
            .checked_add(v.checked_mul(2)?)?
            .checked_add(n_i8 / folio_kernels::QK)?;
        let n_u32 = v.checked_add(t)?;
        let n_f16 = self
            .n_layer
            .checked_mul(2)?
            .checked_mul(t)?
            .checked_mul(c)?;
        let bytes = n_f32
            .checked_add(n_u32)?
            .checked_mul(4)?
            .checked_add(n_f16.checked_mul(2)?)?
            .checked_add(n_i8)?
            .checked_add(ALIGN_SLACK)?;
        Some(SessionLayout {
            n_f32,
            n_u32,
            n_f16,
            n_i8,
            bytes,
        })
    }
}

/// Extra bytes a session may need to reach 4-byte alignment.
pub(crate) const ALIGN_SLACK: usize = core::mem::align_of::<f32>() - 1;

/// Check `folio.format` (raw metadata value) is `"1"`.
pub(crate) fn check_format(raw: &str) -> Result<(), Error> {
    if crate::format::raw_eq(raw, "1") {
        Ok(())
    } else {
        Err(Error::UnsupportedFormat)
    }
}

/// Parse and validate the raw (escaped) `folio.config` value.
pub(crate) fn parse(raw: &str) -> Result<Config, Error> {
    let mut sizes: [Option<u64>; 5] = [None; 5];
    let mut eps = None;
    let mut activation_ok = None;
    let mut tied = None;
    let mut field_err: Option<ConfigField> = None;
    let mut r = Reader::new(EscSource::new(raw));
    let size_fields = [
        ConfigField::VocabSize,
        ConfigField::BlockSize,
        ConfigField::NEmbd,
        ConfigField::NHead,
        ConfigField::NLayer,
    ];
    let res = r.object(|r, key| {
        let Some(k) = key.as_str() else {
            return r.skip_value();
        };
        if let Some(i) = size_fields.iter().position(|f| f.as_str() == k) {
            if r.peek().is_some_and(|c| c == '-' || c.is_ascii_digit()) {
                let v = r.number()?.as_u64();
                if let Some(slot) = sizes.get_mut(i) {
                    *slot = v;
                }
                if v.is_none() && field_err.is_none() {
                    field_err = size_fields.get(i).copied();
                }
            } else {
                field_err = field_err.or(size_fields.get(i).copied());
                r.skip_value()?;
            }
            return Ok(());
        }
        match k {
            "layer_norm_eps" => {
                if r.peek().is_some_and(|c| c == '-' || c.is_ascii_digit()) {
                    eps = Some(r.number()?.as_f32());
                } else {
                    field_err = field_err.or(Some(ConfigField::LayerNormEps));
                    r.skip_value()?;
                }
            }
            "activation" => {
                if r.peek() == Some('"') {
                    activation_ok = Some(r.string_eq("gelu_tanh")?);
                } else {
                    field_err = field_err.or(Some(ConfigField::Activation));
                    r.skip_value()?;
                }
            }
            "tied_embeddings" => {
                if matches!(r.peek(), Some('t' | 'f')) {
                    tied = Some(r.boolean()?);
                } else {
                    field_err = field_err.or(Some(ConfigField::TiedEmbeddings));
                    r.skip_value()?;
                }
            }
            _ => r.skip_value()?,
        }
        Ok(())
    });
    let json_err = |offset| Error::BadMetadataJson {
        key: MetaKey::Config,
        offset,
    };
    res.map_err(json_err)?;
    if !r.at_end() {
        return Err(json_err(r.offset()));
    }
    if let Some(field) = field_err {
        return Err(Error::BadConfig { field });
    }
    let mut vals = [0usize; 5];
    for ((v, s), f) in vals.iter_mut().zip(sizes).zip(size_fields) {
        let s = s.filter(|&s| s > 0).ok_or(Error::BadConfig { field: f })?;
        // Sizes must fit u32 (error payloads and 32-bit targets).
        *v = u32::try_from(s)
            .ok()
            .and_then(|s| usize::try_from(s).ok())
            .ok_or(Error::ConfigTooLarge {
                field: f,
                max: u32::MAX,
            })?;
    }
    let [vocab_size, block_size, n_embd, n_head, n_layer] = vals;
    let layer_norm_eps = eps
        .filter(|e| e.is_finite() && *e >= 0.0)
        .ok_or(Error::BadConfig {
            field: ConfigField::LayerNormEps,
        })?;
    match activation_ok {
        None => {
            return Err(Error::BadConfig {
                field: ConfigField::Activation,
            })
        }
        Some(false) => return Err(Error::BadActivation),
        Some(true) => {}
    }
    let tied_embeddings = tied.ok_or(Error::BadConfig {
        field: ConfigField::TiedEmbeddings,
    })?;
    let cfg = Config {
        vocab_size,
        block_size,
        n_embd,
        n_head,
        n_layer,
        layer_norm_eps,
        tied_embeddings,
    };
    validate(&cfg)?;
    Ok(cfg)
}

/// Structural rules and capacities (everything but the quantised-columns rule, which
/// depends on the tensors).
pub(crate) fn validate(cfg: &Config) -> Result<(), Error> {
    if cfg.n_embd.checked_rem(cfg.n_head) != Some(0) {
        return Err(Error::HeadsDoNotDivide {
            n_embd: cfg.n_embd as u32,
            n_head: cfg.n_head as u32,
        });
    }
    if cfg.n_layer > MAX_LAYERS {
        return Err(Error::ConfigTooLarge {
            field: ConfigField::NLayer,
            max: MAX_LAYERS as u32,
        });
    }
    if cfg.vocab_size > MAX_VOCAB {
        return Err(Error::ConfigTooLarge {
            field: ConfigField::VocabSize,
            max: MAX_VOCAB as u32,
        });
    }
    // 4C and 3C rows, and the session sizes, must not overflow.
    if cfg.n_embd.checked_mul(4).is_none() || cfg.layout().is_none() {
        return Err(Error::ConfigTooLarge {
            field: ConfigField::NEmbd,
            max: u32::MAX,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::String;

    /// Escape a JSON text the way it sits inside a metadata string.
    fn raw(json: &str) -> String {
        json.replace('\\', "\\\\").replace('"', "\\\"")
    }

    const GOOD: &str = r#"{"vocab_size": 65, "block_size": 64, "n_embd": 128, "n_head": 4, "n_layer": 4, "layer_norm_eps": 1e-5, "activation": "gelu_tanh", "tied_embeddings": true}"#;

    #[test]
    fn parses_the_documented_example() {
        let c = parse(&raw(GOOD)).unwrap();
        assert_eq!(
            c,
            Config {
                vocab_size: 65,
                block_size: 64,
                n_embd: 128,
                n_head: 4,
                n_layer: 4,
                layer_norm_eps: 1e-5,
                tied_embeddings: true
            }
        );
        assert_eq!(c.head_size(), 32);
    }

    #[test]
    fn key_order_unknown_fields_and_escapes() {
        let j = r#"{ "extra": {"a": [1, 2]}, "tied_embeddings": false, "activation": "gelu\u005ftanh",
            "layer_norm_eps": 0.00001, "n_layer": 1, "n_head": 2, "n_embd": 32, "block_size": 8, "vocab_size": 3 }"#;
        let c = parse(&raw(j)).unwrap();
        assert_eq!((c.vocab_size, c.n_layer, c.tied_embeddings), (3, 1, false));
        assert_eq!(c.layer_norm_eps, 1e-5);
    }

    #[test]
    fn each_bad_field_is_named() {
        use ConfigField::*;
        let cases = [
            ("\"vocab_size\": 65,", "", VocabSize),
            ("\"vocab_size\": 65", "\"vocab_size\": \"65\"", VocabSize),
            ("\"block_size\": 64", "\"block_size\": 0", BlockSize),
            ("\"n_embd\": 128", "\"n_embd\": 128.0", NEmbd),
            ("\"n_head\": 4", "\"n_head\": -4", NHead),
            ("\"n_layer\": 4,", "", NLayer),
            (
                "\"layer_norm_eps\": 1e-5",
                "\"layer_norm_eps\": -1e-5",
                LayerNormEps,
            ),
            (
                "\"layer_norm_eps\": 1e-5",
                "\"layer_norm_eps\": \"1e-5\"",
                LayerNormEps,
            ),
            ("\"activation\": \"gelu_tanh\",", "", Activation),
            (
                "\"activation\": \"gelu_tanh\"",
                "\"activation\": 1",
                Activation,
            ),
            (
                "\"tied_embeddings\": true",
                "\"tied_embeddings\": 1",
                TiedEmbeddings,
            ),
        ];
        for (from, to, field) in cases {
            let j = GOOD.replace(from, to);
            assert_eq!(parse(&raw(&j)), Err(Error::BadConfig { field }), "{j}");
        }
    }

    #[test]
    fn rules_and_capacities() {
        let j = GOOD.replace("\"gelu_tanh\"", "\"relu\"");
        assert_eq!(parse(&raw(&j)), Err(Error::BadActivation));
        let j = GOOD.replace("\"n_head\": 4", "\"n_head\": 5");
        assert_eq!(
            parse(&raw(&j)),
            Err(Error::HeadsDoNotDivide {
                n_embd: 128,
                n_head: 5
            })
        );
        let j = GOOD.replace("\"n_layer\": 4", "\"n_layer\": 17");
        assert_eq!(
            parse(&raw(&j)),
            Err(Error::ConfigTooLarge {
                field: ConfigField::NLayer,
                max: 16
            })
        );
        let j = GOOD.replace("\"vocab_size\": 65", "\"vocab_size\": 257");
        assert_eq!(
            parse(&raw(&j)),
            Err(Error::ConfigTooLarge {
                field: ConfigField::VocabSize,
                max: 256
            })
        );
        let j = GOOD.replace("\"n_embd\": 128", "\"n_embd\": 4294967296");
        assert!(matches!(
            parse(&raw(&j)),
            Err(Error::ConfigTooLarge {
                field: ConfigField::NEmbd,
                ..
            })
        ));
        assert!(matches!(
            parse(&raw("{\"vocab_size\": 65")),
            Err(Error::BadMetadataJson {
                key: MetaKey::Config,
                ..
            })
        ));
        assert!(matches!(
            parse(&raw("[]")),
            Err(Error::BadMetadataJson { .. })
        ));
        assert!(matches!(
            parse(&raw(&std::format!("{GOOD} x"))),
            Err(Error::BadMetadataJson { .. })
        ));
        assert_eq!(check_format("1"), Ok(()));
        assert_eq!(check_format(r"\u0031"), Ok(()));
        assert_eq!(check_format("2"), Err(Error::UnsupportedFormat));
        assert_eq!(check_format("1 "), Err(Error::UnsupportedFormat));
    }

    #[test]
    fn session_layout_counts_every_buffer() {
        let c = parse(&raw(GOOD)).unwrap();
        let l = c.layout().unwrap();
        // f32: 11C + T + 2V + 4C / 32; u32: V + T; f16: L * 2 * T * C; i8: 4C.
        assert_eq!(l.n_f32, 11 * 128 + 64 + 2 * 65 + 4 * 128 / 32);
        assert_eq!(l.n_u32, 65 + 64);
        assert_eq!(l.n_f16, 4 * 2 * 64 * 128);
        assert_eq!(l.n_i8, 4 * 128);
        assert_eq!(l.bytes, 3 + 4 * (l.n_f32 + l.n_u32) + 2 * l.n_f16 + l.n_i8);
    }
}
