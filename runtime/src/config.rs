//! Stage 2: the `folio.*` metadata strings ([`MetaKey`]) → a validated [`Config`].
//!
//! Sizes are decimal strings, `folio.layer_norm_eps` a decimal number, the rest fixed
//! words (docs/FORMAT.md). The runtime's fixed capacities live here too.
use crate::error::Error;
use crate::header::{unescape, unescape_into, Header};
use crate::names::MetaKey;

/// Most transformer blocks.
pub const MAX_LAYERS: usize = 16;
/// Largest vocabulary (the tokenizer is a `[char; 256]`).
pub const MAX_VOCAB: usize = 256;

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

/// Most tokens a session takes through the matrices at once: 32 on hosts; 1 on bare
/// metal (`target_os = "none"`), where session memory is a few KB and the chunked path
/// would only cost flash.
pub const MAX_CHUNK: usize = if cfg!(target_os = "none") { 1 } else { 32 };

/// Element counts of one session's buffers by type, and their total bytes with the
/// alignment slack (the crate docs' "Session memory"), for steps of `chunk` tokens (the
/// per-token activations are `chunk` deep).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SessionLayout {
    pub chunk: usize,
    pub n_f32: usize,
    pub n_u32: usize,
    pub n_f16: usize,
    pub n_i8: usize,
    pub bytes: usize,
}

/// Extra bytes a session may need to reach 4-byte alignment.
pub(crate) const ALIGN_SLACK: usize = core::mem::align_of::<f32>() - 1;

impl Config {
    /// Read and validate the `folio.*` keys of `header`.
    pub fn from_header(header: &Header<'_>) -> Result<Config, Error> {
        let get = |key| header.folio(key);
        // The index in `words` of the value of `key`.
        let pick = |key, words: &[&str]| {
            let raw = get(key)?;
            let is = |w: &&str| unescape(raw).eq(w.chars());
            words.iter().position(is).ok_or(Error::BadMetadata { key })
        };
        if pick(MetaKey::Format, &["2", "1"])? == 1 {
            return Err(Error::Format1);
        }
        let size = |key: MetaKey| -> Result<usize, Error> {
            let bad = Error::BadMetadata { key };
            let too_large = Error::ConfigTooLarge { key, max: u32::MAX };
            let mut v = 0u64;
            for (i, c) in unescape(get(key)?).enumerate() {
                let d = c.to_digit(10).filter(|_| i == 0 || v > 0).ok_or(bad)?;
                v = v
                    .checked_mul(10)
                    .and_then(|v| v.checked_add(d.into()))
                    .ok_or(too_large)?;
            }
            let v = u32::try_from(v).map_err(|_| too_large)?;
            (v > 0).then_some(v as usize).ok_or(bad)
        };
        let eps_key = MetaKey::LayerNormEps;
        let mut buf = [0u8; 32];
        let eps = unescape_into(get(eps_key)?, &mut buf)
            .and_then(parse_f32)
            .filter(|e| e.is_finite() && *e >= 0.0)
            .ok_or(Error::BadMetadata { key: eps_key })?;
        pick(MetaKey::Activation, &["gelu_tanh"])?;
        let tied_embeddings = pick(MetaKey::TiedEmbeddings, &["false", "true"])? == 1;
        let cfg = Config {
            vocab_size: size(MetaKey::VocabSize)?,
            block_size: size(MetaKey::BlockSize)?,
            n_embd: size(MetaKey::NEmbd)?,
            n_head: size(MetaKey::NHead)?,
            n_layer: size(MetaKey::NLayer)?,
            layer_norm_eps: eps,
            tied_embeddings,
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// Structural rules and capacities (everything but the quantised-columns rule, which
    /// depends on the tensors).
    pub fn validate(&self) -> Result<(), Error> {
        if self.n_embd.checked_rem(self.n_head) != Some(0) {
            return Err(Error::HeadsDoNotDivide {
                n_embd: self.n_embd as u32,
                n_head: self.n_head as u32,
            });
        }
        let too_large = |key, max: usize| {
            Err(Error::ConfigTooLarge {
                key,
                max: max as u32,
            })
        };
        if self.n_layer > MAX_LAYERS {
            return too_large(MetaKey::NLayer, MAX_LAYERS);
        }
        if self.vocab_size > MAX_VOCAB {
            return too_large(MetaKey::VocabSize, MAX_VOCAB);
        }
        self.layout(1).map(drop)
    }

    /// `C / H`.
    pub fn head_size(&self) -> usize {
        self.n_embd / self.n_head.max(1)
    }

    /// Buffer sizes of a session whose steps take `chunk` tokens; an overflow (of them,
    /// or of the 3C and 4C rows) is [`Error::ConfigTooLarge`] naming `n_embd`.
    pub(crate) fn layout(&self, chunk: usize) -> Result<SessionLayout, Error> {
        self.sizes(chunk).ok_or(Error::ConfigTooLarge {
            key: MetaKey::NEmbd,
            max: u32::MAX,
        })
    }

    fn sizes(&self, chunk: usize) -> Option<SessionLayout> {
        let (c, t, v) = (self.n_embd, self.block_size, self.vocab_size);
        let n_i8 = c.checked_mul(4)?.checked_mul(chunk)?;
        let n_f32 = c
            .checked_mul(11)?
            .checked_mul(chunk)?
            .checked_add(n_i8 / folio_kernels::QK)?
            .checked_add(t)?
            .checked_add(v.checked_mul(2)?)?;
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
            chunk,
            n_f32,
            n_u32,
            n_f16,
            n_i8,
            bytes,
        })
    }
}

/// A decimal number, `-?D(.D)?([eE][+-]?D)?` with `D` one or more ASCII digits, rounded to
/// f32 (within an ulp of correct rounding; ±inf on overflow).
///
/// Integer arithmetic only (core's float parsing and soft-float f64 cost kilobytes of
/// flash on Cortex-M): up to 19 significant digits `m` and a power of ten `e`; `m` is
/// kept normalised to its top bit and multiplied or divided by 10 once per step of `e`
/// (each step truncates below bit 2^-60, far below f32's 24 bits), then rounded to f32
/// once and scaled by a power of two exactly (a subnormal rounds a second time).
pub fn parse_f32(s: &str) -> Option<f32> {
    let digits = |d: &str| !d.is_empty() && d.bytes().all(|c| c.is_ascii_digit());
    let (neg, s) = s.strip_prefix('-').map_or((false, s), |r| (true, r));
    let (num, exp) = s
        .split_once(['e', 'E'])
        .map_or((s, None), |(n, e)| (n, Some(e)));
    let (int, frac) = num.split_once('.').unwrap_or((num, ""));
    if !digits(int) || (num.contains('.') && !digits(frac)) {
        return None;
    }
    let mut e = 0i32;
    if let Some(x) = exp {
        let (eneg, x) = x
            .strip_prefix('-')
            .map_or((false, x.strip_prefix('+').unwrap_or(x)), |r| (true, r));
        if !digits(x) {
            return None;
        }
        let v = x.bytes().fold(0i32, |e, c| {
            e.saturating_mul(10).saturating_add(i32::from(c - b'0'))
        });
        e = if eneg { -v } else { v };
    }
    let (mut m, mut exact) = (0u64, true);
    let all = int
        .bytes()
        .map(|c| (c, 0))
        .chain(frac.bytes().map(|c| (c, 1)));
    for (c, in_frac) in all {
        match m
            .checked_mul(10)
            .and_then(|m| m.checked_add(u64::from(c - b'0')))
        {
            Some(v) if exact => (m, e) = (v, e.saturating_sub(in_frac)),
            _ => (exact, e) = (false, e.saturating_add(1 - in_frac)),
        }
    }
    // m < 2^64 < 10^20: 10^e above 10^39 overflows f32, below 10^-66 underflows.
    let v = if m == 0 || e < -66 {
        0.0
    } else if e > 39 {
        f32::INFINITY
    } else {
        let mut p = 0i32; // v = m * 2^p
        let norm = |m: &mut u64, p: &mut i32| {
            let z = m.leading_zeros();
            (*m, *p) = (*m << z, *p - z as i32);
        };
        norm(&mut m, &mut p);
        for _ in 0..e.max(0) {
            // m * 10 = (m >> 4) * 10 * 2^4, which fits: (2^60) * 10 < 2^64.
            (m, p) = ((m >> 4) * 10, p + 4);
            norm(&mut m, &mut p);
        }
        for _ in 0..(-e).max(0) {
            m /= 10;
            norm(&mut m, &mut p);
        }
        // Keep 32 bits (f32 needs 24 + rounding), a sticky bit for the rest.
        let mut v = ((m >> 32) | u64::from(m << 32 != 0)) as u32 as f32;
        p += 32;
        let pow2 = |k: i32| f32::from_bits(((k + 127) as u32) << 23);
        while p > 127 && v.is_finite() {
            (v, p) = (v * pow2(127), p - 127);
        }
        while p < -126 && v != 0.0 {
            (v, p) = (v * pow2(-126), p + 126);
        }
        v * pow2(p.clamp(-126, 127))
    };
    Some(if neg { -v } else { v })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::String;
    use std::vec::Vec;

    const GOOD: [(&str, &str); 9] = [
        ("folio.format", "2"),
        ("folio.vocab_size", "65"),
        ("folio.block_size", "64"),
        ("folio.n_embd", "128"),
        ("folio.n_head", "4"),
        ("folio.n_layer", "4"),
        ("folio.layer_norm_eps", "1e-05"),
        ("folio.activation", "gelu_tanh"),
        ("folio.tied_embeddings", "true"),
    ];

    /// A header with only `__metadata__` (values are raw JSON string bodies).
    fn parse_with(edit: &[(&str, Option<&str>)]) -> Result<Config, Error> {
        let mut meta: Vec<(&str, &str)> = GOOD.to_vec();
        for &(k, v) in edit {
            meta.retain(|(m, _)| *m != k);
            if let Some(v) = v {
                meta.push((k, v));
            }
        }
        let items: Vec<String> = meta
            .iter()
            .map(|(k, v)| std::format!("\"{k}\":\"{v}\""))
            .collect();
        let json = std::format!("{{\"__metadata__\":{{{}}}}}", items.join(","));
        let mut f = Vec::from((json.len() as u64).to_le_bytes());
        f.extend_from_slice(json.as_bytes());
        Config::from_header(&Header::parse(&f)?)
    }

    #[test]
    fn parses_the_documented_example() {
        let c = parse_with(&[]).unwrap();
        let want = Config {
            vocab_size: 65,
            block_size: 64,
            n_embd: 128,
            n_head: 4,
            n_layer: 4,
            layer_norm_eps: 1e-5,
            tied_embeddings: true,
        };
        assert_eq!(c, want);
        assert_eq!(c.head_size(), 32);
        let escaped = [
            ("folio.n_layer", Some(r"\u0034")),
            ("folio.activation", Some(r"gelu\u005ftanh")),
            ("folio.layer_norm_eps", Some(r"0.0000\u0031")),
        ];
        assert_eq!(parse_with(&escaped), Ok(want));
        let tied = [("folio.tied_embeddings", Some("false"))];
        assert!(!parse_with(&tied).unwrap().tied_embeddings);
    }

    #[test]
    fn each_bad_value_is_named() {
        use MetaKey::*;
        let cases = [
            (VocabSize, "065"),
            (VocabSize, "0"),
            (VocabSize, ""),
            (BlockSize, "+64"),
            (NEmbd, "128.0"),
            (NHead, "-4"),
            (NLayer, " 4"),
            (LayerNormEps, "-1e-5"),
            (LayerNormEps, "1e99"),
            (LayerNormEps, "eps"),
            (Activation, "relu"),
            (TiedEmbeddings, "True"),
            (Format, "3"),
        ];
        for (key, v) in cases {
            let got = parse_with(&[(key.as_str(), Some(v))]);
            assert_eq!(got, Err(Error::BadMetadata { key }), "{key:?} = {v:?}");
        }
        for key in MetaKey::all().take(9) {
            let got = parse_with(&[(key.as_str(), None)]);
            assert_eq!(got, Err(Error::MissingMetadata { key }), "{key:?}");
        }
        assert_eq!(
            parse_with(&[("folio.format", Some("1"))]),
            Err(Error::Format1)
        );
    }

    #[test]
    fn rules_and_capacities() {
        let too_large = |key, max| Err(Error::ConfigTooLarge { key, max });
        let heads = parse_with(&[("folio.n_head", Some("5"))]);
        assert_eq!(
            heads,
            Err(Error::HeadsDoNotDivide {
                n_embd: 128,
                n_head: 5
            })
        );
        let layers = parse_with(&[("folio.n_layer", Some("17"))]);
        assert_eq!(layers, too_large(MetaKey::NLayer, 16));
        let vocab = parse_with(&[("folio.vocab_size", Some("257"))]);
        assert_eq!(vocab, too_large(MetaKey::VocabSize, 256));
        let embd = parse_with(&[("folio.n_embd", Some("4294967296"))]);
        assert_eq!(embd, too_large(MetaKey::NEmbd, u32::MAX));
        let huge = parse_with(&[("folio.block_size", Some("99999999999999999999999"))]);
        assert_eq!(huge, too_large(MetaKey::BlockSize, u32::MAX));
    }

    #[test]
    fn decimal_parser_matches_std_within_an_ulp() {
        for s in [
            "1e-5",
            "1e-05",
            "0.00001",
            "1E-5",
            "1e-6",
            "0.1",
            "3.14159",
            "-2.5",
            "0",
            "-0",
            "123456789",
            "1.5e10",
            "6.103515625e-05",
            "9.999999747378752e-06",
            "1e-12",
            "12345678901234567890123e-20",
            "0.000000000000000000000000000000000000001",
            "2e38",
            "1e+5",
        ] {
            let got = parse_f32(s).unwrap();
            let want: f32 = s.parse().unwrap();
            let ulps = (got.to_bits() as i64 - want.to_bits() as i64).abs();
            assert!(ulps <= 1, "{s}: {got} vs {want}");
        }
        assert_eq!(parse_f32("1e999"), Some(f32::INFINITY));
        assert_eq!(parse_f32("1e-999"), Some(0.0));
        // An exponent past i32 saturates; the fraction's digits then still lower it (found by
        // the config fuzz target: `e - 1` overflowed, and wrapped to +inf in release).
        assert_eq!(parse_f32("7.33e-3333333333333333333"), Some(0.0));
        assert_eq!(parse_f32("-7.33e-99999999999"), Some(-0.0));
        assert_eq!(parse_f32("7.33e99999999999"), Some(f32::INFINITY));
        for bad in [
            "", "-", "1.", ".5", "1e", "+1", "1x", "0x10", "1e+", "1.e5", "--1",
        ] {
            assert_eq!(parse_f32(bad), None, "{bad}");
        }
    }

    #[test]
    fn session_layout_counts_every_buffer() {
        let cfg = parse_with(&[]).unwrap();
        for p in [1, 3] {
            let l = cfg.layout(p).unwrap();
            // f32: P(11C + 4C / 32) + T + 2V; u32: V + T; f16: L * 2 * T * C; i8: 4CP.
            assert_eq!(l.n_f32, p * (11 * 128 + 4 * 128 / 32) + 64 + 2 * 65);
            assert_eq!(l.n_u32, 65 + 64);
            assert_eq!(l.n_f16, 4 * 2 * 64 * 128);
            assert_eq!(l.n_i8, p * 4 * 128);
            assert_eq!(l.bytes, 3 + 4 * (l.n_f32 + l.n_u32) + 2 * l.n_f16 + l.n_i8);
        }
    }
}
