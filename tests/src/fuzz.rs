//! The fuzz harness: one function per cargo-fuzz target (`fuzz/fuzz_targets/*.rs` call
//! them and nothing else), replayed over the committed corpus by `tests/fuzz_corpus.rs` on
//! stable.
//!
//! - [`header`]: raw bytes → [`Header::parse`], then every entry, metadata value and
//!   [`Config::from_header`].
//! - [`config`]: metadata values (separated by `0xFF`) → a header-only file →
//!   [`Config::from_header`] and the vocabulary; a config that validates and is small gets
//!   zero weights written for it, must then load, and its tokenizer must round-trip.
//! - [`model`]: a 16-byte run prefix (sampler settings, context mode, prompt) and a model
//!   file → [`Model::from_bytes`], a few [`Generator`] steps, one direct `forward`.
//!
//! Every function returns whether the stage under test accepted the input, so the replay
//! can check that a real file loads and a malformed one is rejected. A panic anywhere is a
//! bug; so is a broken property (`assert!` here: a loaded model must decode every token it
//! samples). Nothing grows with the input beyond a fixed cap ([`MAX_SESSION`],
//! [`MAX_ZERO_PARAMS`]).
use crate::fixture::{vocab_for, Config as FixtureConfig, Encoding, FixtureSpec, Plan};
use crate::handwritten::{self, json_string, Escapes, Layout};
use crate::AlignedBytes;
use folio_runtime::header::unescape_into;
use folio_runtime::{
    unescape, Config, ContextMode, Error, Generator, Header, MetaKey, Model, Sampler,
    SamplerConfig, TensorId, TensorKind,
};

/// Largest session (bytes) the model target allocates; larger models are skipped.
pub const MAX_SESSION: usize = 1 << 20;
/// Largest parameter count the config target writes zero weights for (f32: 64 KiB).
pub const MAX_ZERO_PARAMS: usize = 1 << 14;
/// Bytes of run settings in front of a model target's file.
pub const RUN_PREFIX: usize = 16;
/// Most prompt tokens of a run (`RUN_PREFIX - 9`).
const MAX_PROMPT: usize = 7;

/// A target's harness function.
pub type Target = fn(&[u8]) -> Outcome;

/// The fuzz targets: the names of `fuzz/fuzz_targets/*.rs` and `fuzz/corpus/*`.
pub const TARGETS: [(&str, Target); 3] = [("header", header), ("config", config), ("model", model)];

/// What the stage under test made of an input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Accepted (header parsed; config and vocabulary valid; model loaded).
    Accepted,
    /// Rejected with this error.
    Rejected(Error),
    /// Not run: the input is too short for the target's framing.
    Skipped,
}

impl<T> From<Result<T, Error>> for Outcome {
    fn from(r: Result<T, Error>) -> Self {
        r.map_or_else(Outcome::Rejected, |_| Outcome::Accepted)
    }
}

// ---------------------------------------------------------------------------------------
// Target 1: the header reader

/// Parse `data` as a file header and read back everything it lists.
pub fn header(data: &[u8]) -> Outcome {
    let h = match Header::parse(data) {
        Ok(h) => h,
        Err(e) => return Outcome::Rejected(e),
    };
    let mut count = 0;
    let mut buf = [0u8; 64];
    for t in h.tensors() {
        count += 1;
        let _ = (t.name().count(), t.shape(), t.bytes(), t.numel);
        let _ = unescape_into(t.name_raw, &mut buf);
    }
    assert_eq!(count, h.tensor_count, "tensors() disagrees with the count");
    for key in MetaKey::all() {
        if let Some(raw) = h.metadata(key.as_str()) {
            let _ = unescape(raw).count();
            let _ = unescape_into(raw, &mut buf);
        }
    }
    let _ = Config::from_header(&h);
    Outcome::Accepted
}

// ---------------------------------------------------------------------------------------
// Target 2: config and vocabulary

/// A JSON string literal with every character a `\u` escape (surrogate pairs above the BMP).
fn json_escaped(s: &str) -> String {
    let mut out = String::from("\"");
    let mut units = [0u16; 2];
    for c in s.chars() {
        for u in c.encode_utf16(&mut units) {
            out.push_str(&format!("\\u{u:04x}"));
        }
    }
    out.push('"');
    out
}

/// The `__metadata__` members of a config-target input: `[mask lo, mask hi]` then the
/// values of the keys of [`MetaKey::all`] in order, separated by `0xFF` (absent values are
/// absent keys); bit `i` of the mask writes value `i` with every character escaped.
fn config_members(data: &[u8]) -> Option<String> {
    let (mask, rest) = data.split_first_chunk::<2>()?;
    let mask = u16::from_le_bytes(*mask);
    let members: Vec<String> = rest
        .split(|&b| b == 0xFF)
        .zip(MetaKey::all())
        .enumerate()
        .map(|(i, (value, key))| {
            let value = String::from_utf8_lossy(value);
            let json = if mask & (1 << i) != 0 {
                json_escaped(&value)
            } else {
                json_string(&value, false)
            };
            format!("\"{}\":{json}", key.as_str())
        })
        .collect();
    Some(members.join(","))
}

/// The per-layer tensor kinds, in file order.
const PER_LAYER: [TensorKind; 12] = [
    TensorKind::Ln1Weight,
    TensorKind::Ln1Bias,
    TensorKind::AttnWeight,
    TensorKind::AttnBias,
    TensorKind::AttnProjWeight,
    TensorKind::AttnProjBias,
    TensorKind::Ln2Weight,
    TensorKind::Ln2Bias,
    TensorKind::FcWeight,
    TensorKind::FcBias,
    TensorKind::MlpProjWeight,
    TensorKind::MlpProjBias,
];

/// The tensors of `cfg` (names and shapes), in data order.
fn tensor_shapes(cfg: &Config) -> Vec<(String, Vec<usize>)> {
    let (v, t, c) = (cfg.vocab_size, cfg.block_size, cfg.n_embd);
    let shape = |kind| match kind {
        TensorKind::Wte | TensorKind::LmHead => vec![v, c],
        TensorKind::Wpe => vec![t, c],
        TensorKind::AttnWeight => vec![3 * c, c],
        TensorKind::AttnProjWeight => vec![c, c],
        TensorKind::FcWeight => vec![4 * c, c],
        TensorKind::MlpProjWeight => vec![c, 4 * c],
        TensorKind::AttnBias => vec![3 * c],
        TensorKind::FcBias => vec![4 * c],
        _ => vec![c],
    };
    let mut ids = vec![
        TensorId::new(TensorKind::Wte, 0),
        TensorId::new(TensorKind::Wpe, 0),
    ];
    for l in 0..cfg.n_layer {
        ids.extend(PER_LAYER.map(|k| TensorId::new(k, l)));
    }
    ids.push(TensorId::new(TensorKind::LnFWeight, 0));
    ids.push(TensorId::new(TensorKind::LnFBias, 0));
    if !cfg.tied_embeddings {
        ids.push(TensorId::new(TensorKind::LmHead, 0));
    }
    ids.into_iter()
        .map(|id| (id.to_string(), shape(id.kind)))
        .collect()
}

/// A file of all-zero F32 weights for `cfg` with the given metadata members, or `None`
/// when it would hold more than [`MAX_ZERO_PARAMS`] parameters.
fn zero_model(cfg: &Config, members: &str) -> Option<Vec<u8>> {
    let tensors = tensor_shapes(cfg);
    let params = tensors.iter().try_fold(0usize, |n, (_, s)| {
        n.checked_add(s.iter().try_fold(1usize, |p, &d| p.checked_mul(d))?)
    })?;
    if params > MAX_ZERO_PARAMS {
        return None;
    }
    let (header, offsets) = handwritten::f32_header(members, &tensors);
    let end = offsets.last().copied().unwrap_or(0) as usize;
    Some(handwritten::raw_file(&header, &vec![0u8; end]))
}

/// Read a config and vocabulary from fuzz-chosen metadata values; when they validate and
/// are small, load a zero-weight model for them and check its tokenizer.
pub fn config(data: &[u8]) -> Outcome {
    let Some(members) = config_members(data) else {
        return Outcome::Skipped;
    };
    let file = handwritten::raw_file(&format!("{{\"__metadata__\":{{{members}}}}}"), &[]);
    let cfg = match Header::parse(&file).and_then(|h| Config::from_header(&h)) {
        Ok(cfg) => cfg,
        Err(e) => return Outcome::Rejected(e),
    };
    // The vocabulary is read before the weights: any error after it is about tensors.
    match Model::from_bytes(&file) {
        Err(e @ (Error::VocabLength { .. } | Error::DuplicateVocab { .. })) => {
            return Outcome::Rejected(e)
        }
        Err(Error::MissingMetadata {
            key: MetaKey::Vocab,
        }) => {
            return Outcome::Rejected(Error::MissingMetadata {
                key: MetaKey::Vocab,
            })
        }
        _ => {}
    }
    let Some(file) = zero_model(&cfg, &members) else {
        return Outcome::Accepted;
    };
    let file = AlignedBytes::new(&file);
    let model = match Model::from_bytes(file.bytes()) {
        Ok(m) => m,
        Err(e) => panic!("{cfg:?} validated but its zero-weight file fails: {e}"),
    };
    assert_eq!(model.config(), &cfg);
    let tok = model.tokenizer();
    assert_eq!(tok.len(), cfg.vocab_size);
    let text: String = tok.chars().iter().collect();
    let mut ids = vec![0u32; cfg.vocab_size];
    assert_eq!(tok.encode(&text, &mut ids), Ok(cfg.vocab_size));
    for (i, (&id, &ch)) in ids.iter().zip(tok.chars()).enumerate() {
        assert_eq!(id as usize, i, "{ch:?} encodes to another id");
        assert_eq!(tok.decode(id), Ok(ch));
    }
    assert!(tok.decode(cfg.vocab_size as u32).is_err());
    if model.session_bytes() <= MAX_SESSION {
        let mut mem = vec![0u8; model.session_bytes()];
        let mut session = model.session(&mut mem).expect("exact session size");
        let _ = session.forward(0, 0).map(|logits| logits.len());
    }
    Outcome::Accepted
}

// ---------------------------------------------------------------------------------------
// Target 3: load, generate, sample

/// A model target's run: the first [`RUN_PREFIX`] bytes of its input.
#[derive(Clone, Copy, Debug)]
pub struct Run {
    /// Bit 0: [`ContextMode::Exact`]; bit 1: place the file at `bits 2..5` past an 8-byte
    /// boundary instead of aligning its data section; bits 5..8: session memory for
    /// prompt chunks of `1 + (flags >> 5)` tokens.
    pub flags: u8,
    /// Sampler settings (temperature, top-p may be invalid on purpose).
    pub sampler: SamplerConfig,
    /// Tokens of the prompt (0..=7; 0 is the empty-prompt error).
    pub prompt: [u32; MAX_PROMPT],
    /// Prompt length.
    pub prompt_len: usize,
    /// `next` calls after the prompt (0..=15).
    pub steps: usize,
}

impl Run {
    /// Decode a run prefix.
    pub fn parse(p: &[u8; RUN_PREFIX]) -> Run {
        let temperature = match p[1] {
            250 => f32::NAN,
            251 => f32::INFINITY,
            252 => -1.0,
            253 => 1e-40,
            254 => 1e30,
            b => f32::from(b) / 64.0,
        };
        let top_p = match p[3] {
            255 => 1.0,
            b => f32::from(b) / 255.0,
        };
        Run {
            flags: p[0],
            sampler: SamplerConfig {
                temperature,
                top_k: usize::from(p[2]),
                top_p,
                seed: u64::from(u32::from_le_bytes([p[4], p[5], p[6], p[7]])),
            },
            prompt: core::array::from_fn(|i| u32::from(p[9 + i])),
            prompt_len: usize::from(p[8] & 7),
            steps: usize::from(p[8] >> 4),
        }
    }

    /// The prefix that decodes to these settings (for seeds; `temperature` and `top_p` are
    /// rounded to what the prefix can hold).
    pub fn encode(&self) -> [u8; RUN_PREFIX] {
        let mut p = [0u8; RUN_PREFIX];
        p[0] = self.flags;
        p[1] = (self.sampler.temperature * 64.0).clamp(0.0, 249.0) as u8;
        p[2] = self.sampler.top_k.min(255) as u8;
        p[3] = if self.sampler.top_p >= 1.0 {
            255
        } else {
            (self.sampler.top_p * 255.0).clamp(0.0, 254.0) as u8
        };
        p[4..8].copy_from_slice(&(self.sampler.seed as u32).to_le_bytes());
        p[8] = (self.prompt_len.min(MAX_PROMPT) | (self.steps.min(15) << 4)) as u8;
        for (b, &t) in p[9..].iter_mut().zip(&self.prompt) {
            *b = t.min(255) as u8;
        }
        p
    }
}

/// Load the model after the run prefix, then prompt, generate and sample as the prefix says.
pub fn model(data: &[u8]) -> Outcome {
    let Some((prefix, file)) = data.split_first_chunk::<RUN_PREFIX>() else {
        return Outcome::Skipped;
    };
    let run = Run::parse(prefix);
    let placed = if run.flags & 2 == 0 {
        AlignedBytes::new(file)
    } else {
        AlignedBytes::with_offset(file, usize::from(run.flags >> 2) & 7)
    };
    let model = match Model::from_bytes(placed.bytes()) {
        Ok(m) => m,
        Err(e) => return Outcome::Rejected(e),
    };
    let _ = (
        model.weight_bytes(),
        model.encodings().count(),
        model.kv_bytes(),
    );
    for t in model.header().tensors() {
        let _ = model.tensor_id(&t);
    }
    if model.session_bytes() > MAX_SESSION {
        return Outcome::Accepted;
    }
    let mut mem = vec![0u8; model.session_bytes()];
    let too_small = model.session(&mut mem[1..]).map(drop);
    assert!(too_small.is_err(), "a session one byte short was accepted");
    let tok = model.tokenizer();
    let mode = if run.flags & 1 == 0 {
        ContextMode::Shift
    } else {
        ContextMode::Exact
    };
    // The tokens a session of `bytes` generates (prompt chunks as deep as they hold).
    let generate = |bytes: usize| {
        let mut out = Vec::new();
        let Ok(sampler) = Sampler::new(run.sampler) else {
            return out;
        };
        let mut mem = vec![0u8; bytes];
        let session = model.session(&mut mem).expect("session size");
        let mut gen = Generator::with_mode(session, sampler, mode);
        if gen.prompt(&run.prompt[..run.prompt_len]).is_ok() {
            for _ in 0..run.steps {
                let Ok(t) = gen.next() else { break };
                assert!(
                    tok.decode(t).is_ok(),
                    "sampled token {t} is not in the vocabulary"
                );
                out.push(t);
            }
        }
        out
    };
    let one = generate(model.session_bytes());
    let chunk = 1 + usize::from(run.flags >> 5);
    if let Some(bytes) = model.session_bytes_for(chunk).filter(|&b| b <= MAX_SESSION) {
        assert_eq!(
            one,
            generate(bytes),
            "prompt chunks of {chunk} changed the text"
        );
    }
    // One forward at a fuzz-chosen token and position (either may be out of range).
    let mut session = model.session(&mut mem).expect("exact session size");
    let pos = usize::from(prefix[15]) % (model.config().block_size + 2);
    let _ = session.forward(run.prompt[0], pos).map(|l| l.len());
    Outcome::Accepted
}

// ---------------------------------------------------------------------------------------
// Seeds

/// One seed file: the target, a file name (`ok-*` must be accepted, `err-*` rejected) and
/// its bytes.
pub type Seed = (&'static str, String, Vec<u8>);

/// Small real model files: every encoding (q8_0 and q4_0 tied, f32 and f16 untied) and
/// the hand-written layout (escapes everywhere, fillers, unknown tensors).
fn real_models() -> Vec<(String, Vec<u8>)> {
    // C = 32 is the smallest width that can be quantised (one q8_0/q4_0 group a row).
    let quant = FixtureConfig::new(4, 32, 2, 1).vocab(5);
    let small = FixtureConfig::new(4, 8, 2, 1).vocab(7).untied();
    let mut out = Vec::new();
    for enc in [Encoding::Q8_0, Encoding::Q4_0] {
        let spec = FixtureSpec::new(quant, Plan::All(enc), 1).std(0.5);
        out.push((enc.as_str().to_string(), spec.to_bytes()));
    }
    for enc in [Encoding::F32, Encoding::F16] {
        let spec = FixtureSpec::new(small, Plan::All(enc), 2).std(0.5);
        out.push((format!("{}-untied", enc.as_str()), spec.to_bytes()));
    }
    let two = FixtureConfig::new(3, 8, 1, 2).vocab(4);
    let fixture = FixtureSpec::new(two, Plan::All(Encoding::F32), 3)
        .std(0.5)
        .build();
    let layout = Layout {
        escapes: Escapes::Everything,
        ..Layout::scrambled(5)
    };
    out.push(("handwritten".into(), handwritten::write(&fixture, &layout)));
    out
}

/// Malformed variants of a valid file: truncations (in the prefix, the header, the last
/// bytes), a bit flip in the header, a huge header length.
fn malformed(file: &[u8]) -> Vec<(&'static str, Vec<u8>)> {
    let n = u64::from_le_bytes(file[..8].try_into().expect("8 bytes")) as usize;
    let mut flip = file.to_vec();
    flip[8 + n / 2] ^= 0x20;
    let mut huge = file.to_vec();
    huge[..8].copy_from_slice(&u64::MAX.to_le_bytes());
    vec![
        ("trunc-prefix", file[..5].to_vec()),
        ("trunc-header", file[..8 + n / 2].to_vec()),
        ("trunc-end", file[..file.len() - 3].to_vec()),
        ("flip-header", flip),
        ("huge-len", huge),
    ]
}

/// A config-target input: the escape mask, then the values of [`MetaKey::all`] in order.
pub fn config_input(mask: u16, values: &[&str]) -> Vec<u8> {
    let mut out = mask.to_le_bytes().to_vec();
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            out.push(0xFF);
        }
        out.extend_from_slice(v.as_bytes());
    }
    out
}

/// The committed seed corpus: real files, their malformed variants and hand-made
/// config inputs, for every target.
pub fn seeds() -> Vec<Seed> {
    let mut out: Vec<Seed> = Vec::new();
    let run = Run {
        flags: 0,
        sampler: SamplerConfig {
            temperature: 0.8,
            top_k: 3,
            top_p: 0.9,
            seed: 7,
        },
        prompt: [1, 2, 0, 3, 1, 2, 0],
        prompt_len: 3,
        steps: 6,
    };
    for (i, (name, file)) in real_models().into_iter().enumerate() {
        let exact = Run {
            flags: (i % 2) as u8,
            ..run
        };
        let with_run = |f: &[u8]| [&exact.encode()[..], f].concat();
        out.push(("model", format!("ok-{name}"), with_run(&file)));
        if name == "f16-untied" {
            for (what, bad) in malformed(&file) {
                out.push(("model", format!("err-{name}-{what}"), with_run(&bad)));
            }
        }
        // The header target reads no tensor data: the header alone, data section empty.
        let n = u64::from_le_bytes(file[..8].try_into().expect("8 bytes")) as usize;
        let head = &file[..8 + n];
        if name == "q4_0" || name == "handwritten" {
            out.push(("header", format!("ok-{name}"), head.to_vec()));
        }
        if name == "handwritten" {
            for (what, bad) in malformed(head) {
                out.push(("header", format!("err-{name}-{what}"), bad));
            }
        }
    }
    let vocab: String = vocab_for(5).into_iter().collect();
    let shakespeare: String = vocab_for(65).into_iter().collect();
    let good = [
        "2",
        "5",
        "4",
        "8",
        "2",
        "1",
        "1e-5",
        "gelu_tanh",
        "true",
        &vocab,
    ];
    // (name, escape mask, values changed from `good`)
    type Edits<'a> = &'a [(usize, &'a str)];
    let configs: [(&str, u16, Edits); 10] = [
        ("ok-tied", 0, &[]),
        ("ok-escaped", 0x3FF, &[]),
        (
            "ok-shakespeare-untied",
            0x200,
            &[
                (1, "65"),
                (2, "2"),
                (3, "4"),
                (4, "1"),
                (6, "0.00001"),
                (8, "false"),
                (9, &shakespeare),
            ],
        ),
        // Underflows to 0 (a valid epsilon): the exponent overflowed once (fuzz crash).
        ("ok-eps-underflow", 0, &[(6, "7.33e-3333333333333333333")]),
        ("err-format1", 0, &[(0, "1")]),
        ("err-heads", 0, &[(4, "3")]),
        ("err-eps", 0, &[(6, "1e40")]),
        ("err-zero", 0, &[(2, "0")]),
        ("err-dup-vocab", 0, &[(9, "aabcd")]),
        ("err-short-vocab", 0, &[(1, "6")]),
    ];
    for (name, mask, edits) in configs {
        let mut values = good;
        for &(i, v) in edits {
            values[i] = v;
        }
        out.push(("config", name.to_string(), config_input(mask, &values)));
    }
    out.push(("config", "err-missing".into(), config_input(0, &good[..9])));
    out
}
