//! A second folio writer: raw bytes, no `safetensors` crate, and on purpose a different
//! layout from [`crate::fixture::Fixture::to_safetensors`], to show the loader depends on
//! the format (docs/FORMAT.md) and not on one writer's habits:
//!
//! - tensors in a shuffled order in the data buffer (not sorted by dtype, then name);
//! - small unknown `U8` tensors in front and between tensors, so offsets are odd but still
//!   naturally aligned (an F16 at 2 mod 4, an F32 at 4 mod 8), plus an unknown F32 tensor;
//! - JSON keys (tensors, `__metadata__`, metadata keys, each tensor's `dtype`/`shape`/
//!   `data_offsets`) in shuffled order, with whitespace and newlines between tokens;
//! - `folio.config` written by hand (shuffled keys, `1E-5`-style exponent), `folio.vocab`
//!   with every character as a `\uXXXX` escape, and optionally `\u` escapes in the outer
//!   strings too;
//! - header padded with tabs/newlines/spaces, optionally so the data buffer starts at
//!   4 mod 8 (still 4-aligned, which is all the format requires).
//!
//! The files remain valid safetensors (contiguous offsets, exact lengths): the `safetensors`
//! crate and the f64 reference read them too.
use crate::fixture::{Fixture, StoredTensor};
use crate::rng::Rng;
use safetensors::tensor::Dtype;

/// Where `\uXXXX` escapes are used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Escapes {
    /// Only inside `folio.vocab` (one level down, every character).
    VocabOnly,
    /// Also every letter of the outer metadata values.
    Values,
    /// Also every letter of tensor names and metadata keys.
    Everything,
}

/// The choices of one hand-written layout.
#[derive(Clone, Copy, Debug)]
pub struct Layout {
    /// Shuffles the order of the tensors in the data buffer.
    pub order_seed: u64,
    /// Shuffles the order of keys in the JSON header.
    pub key_seed: u64,
    /// Unknown U8 tensors before and between tensors (odd-but-aligned offsets); without
    /// them, tensors are grouped by alignment (shuffled within each group).
    pub fillers: bool,
    /// An unknown F32 tensor (`extra.unused`) and an unknown U8 one (`aa.notes`).
    pub extra_tensors: bool,
    /// Where `\u` escapes appear.
    pub escapes: Escapes,
    /// `(8 + header length) % 8`: 0 (the safetensors convention) or 4.
    pub data_start_mod8: usize,
}

impl Layout {
    /// A layout that differs from the safetensors crate's in every respect listed above.
    pub fn scrambled(seed: u64) -> Self {
        Layout {
            order_seed: seed,
            key_seed: seed ^ 0xA5A5,
            fillers: true,
            extra_tensors: true,
            escapes: Escapes::Values,
            data_start_mod8: 0,
        }
    }

    /// Several layouts, one per variation, for tests that loop over them.
    pub fn variants() -> Vec<(&'static str, Layout)> {
        let base = Layout::scrambled(7);
        vec![
            ("scrambled", base),
            (
                "no fillers, vocab escapes only",
                Layout {
                    fillers: false,
                    extra_tensors: false,
                    escapes: Escapes::VocabOnly,
                    ..base
                },
            ),
            (
                "escapes everywhere",
                Layout {
                    escapes: Escapes::Everything,
                    order_seed: 11,
                    ..base
                },
            ),
            (
                "data at 4 mod 8",
                Layout {
                    data_start_mod8: 4,
                    order_seed: 13,
                    ..base
                },
            ),
        ]
    }
}

fn dtype_name(d: Dtype) -> &'static str {
    match d {
        Dtype::F32 => "F32",
        Dtype::F16 => "F16",
        Dtype::I8 => "I8",
        Dtype::U8 => "U8",
        other => panic!("handwritten writer: unsupported dtype {other:?}"),
    }
}

fn align_of(d: Dtype) -> usize {
    match d {
        Dtype::F32 => 4,
        Dtype::F16 => 2,
        _ => 1,
    }
}

/// A JSON string literal for `s`; `escape_letters` writes ASCII letters as `\u00XX`.
pub fn json_string(s: &str, escape_letters: bool) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c if escape_letters && c.is_ascii_alphabetic() => {
                out.push_str(&format!("\\u{:04X}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn shuffle<T>(v: &mut [T], rng: &mut Rng) {
    for i in (1..v.len()).rev() {
        let j = rng.below(i + 1);
        v.swap(i, j);
    }
}

/// `folio.config` by hand: shuffled keys, spaces, an upper-case exponent for epsilon.
fn config_json(f: &Fixture, rng: &mut Rng) -> String {
    let c = f.spec.config;
    let mut entries = vec![
        format!("\"n_layer\": {}", c.n_layer),
        format!("\"vocab_size\" :{}", c.vocab_size),
        format!("\"block_size\":{}", c.block_size),
        format!(" \"n_embd\" : {}", c.n_embd),
        format!("\"n_head\":\t{}", c.n_head),
        format!("\"layer_norm_eps\": {:E}", c.layer_norm_eps),
        "\"activation\": \"gelu_tanh\"".to_string(),
        format!("\"tied_embeddings\": {}", c.tied_embeddings),
    ];
    shuffle(&mut entries, rng);
    format!("{{ {} }}", entries.join(", "))
}

/// `folio.vocab` by hand: every character as a `\uXXXX` escape.
fn vocab_json(f: &Fixture) -> String {
    let items: Vec<String> = f
        .vocab()
        .iter()
        .map(|&c| format!("\"\\u{:04x}\"", c as u32))
        .collect();
    format!("[{}]", items.join(","))
}

/// Write `f` as a folio file in `layout`.
pub fn write(f: &Fixture, layout: &Layout) -> Vec<u8> {
    let mut order_rng = Rng::new(layout.order_seed);
    let mut key_rng = Rng::new(layout.key_seed);

    let mut items: Vec<StoredTensor> = f.tensors.clone();
    if layout.extra_tensors {
        items.push(StoredTensor {
            name: "extra.unused".into(),
            dtype: Dtype::F32,
            shape: vec![3],
            data: [1.5f32, -2.0, 7.0]
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect(),
        });
        items.push(StoredTensor {
            name: "aa.notes".into(),
            dtype: Dtype::U8,
            shape: vec![5],
            data: b"hello".to_vec(),
        });
    }
    shuffle(&mut items, &mut order_rng);
    if !layout.fillers {
        // Without fillers, alignment comes from order: 4-byte dtypes, then 2, then 1 (a
        // stable sort, so the shuffled order survives within each group).
        items.sort_by_key(|t| std::cmp::Reverse(align_of(t.dtype)));
    }

    // Lay out the data buffer, with unknown U8 fillers where alignment needs a gap.
    let mut placed: Vec<(StoredTensor, usize, usize)> = Vec::new();
    let mut data: Vec<u8> = Vec::new();
    let mut n_fill = 0;
    let place =
        |t: StoredTensor, data: &mut Vec<u8>, placed: &mut Vec<(StoredTensor, usize, usize)>| {
            let begin = data.len();
            data.extend_from_slice(&t.data);
            placed.push((t, begin, data.len()));
        };
    if layout.fillers {
        place(
            StoredTensor {
                name: "pad.lead".into(),
                dtype: Dtype::U8,
                shape: vec![2],
                data: vec![0xAB, 0xCD],
            },
            &mut data,
            &mut placed,
        );
    }
    for t in items {
        let a = align_of(t.dtype);
        let gap = (a - data.len() % a) % a;
        if gap > 0 {
            assert!(layout.fillers, "layout needs fillers for alignment");
            let filler = StoredTensor {
                name: format!("pad.{n_fill}"),
                dtype: Dtype::U8,
                shape: vec![gap],
                data: vec![0xEE; gap],
            };
            n_fill += 1;
            place(filler, &mut data, &mut placed);
        }
        place(t, &mut data, &mut placed);
    }

    // Header entries.
    let esc_names = layout.escapes == Escapes::Everything;
    let esc_values = layout.escapes != Escapes::VocabOnly;
    let mut entries: Vec<String> = placed
        .iter()
        .enumerate()
        .map(|(i, (t, b, e))| {
            let shape: Vec<String> = t.shape.iter().map(|d| d.to_string()).collect();
            let mut fields = [
                format!("\"dtype\":{}", json_string(dtype_name(t.dtype), esc_names)),
                format!("\"shape\": [ {} ]", shape.join(" , ")),
                format!("\"data_offsets\":[{},{}]", b, e),
            ];
            fields.rotate_left(i % 3);
            format!(
                "{} :\n    {{ {} }}",
                json_string(&t.name, esc_names),
                fields.join(", ")
            )
        })
        .collect();
    let mut rng_meta = Rng::new(layout.key_seed ^ 1);
    let mut meta: Vec<(String, String)> = f
        .metadata
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for (k, v) in meta.iter_mut() {
        match k.as_str() {
            "folio.config" => *v = config_json(f, &mut rng_meta),
            "folio.vocab" => *v = vocab_json(f),
            _ => {}
        }
    }
    shuffle(&mut meta, &mut key_rng);
    let meta_items: Vec<String> = meta
        .iter()
        .map(|(k, v)| {
            format!(
                "{}: {}",
                json_string(k, esc_names),
                json_string(v, esc_values)
            )
        })
        .collect();
    entries.push(format!(
        "{}:{{\n    {}\n  }}",
        json_string("__metadata__", esc_names),
        meta_items.join(",\n    ")
    ));
    shuffle(&mut entries, &mut key_rng);

    let mut header = format!("\n  {{\n  {}\n}}", entries.join(" ,\n  ")).into_bytes();
    let target_mod = layout.data_start_mod8 % 8;
    let pad_chars = [b'\n', b'\t', b' ', b'\r'];
    let mut k = 0;
    while (8 + header.len()) % 8 != target_mod {
        header.push(pad_chars[k % 4]);
        k += 1;
    }
    let mut out = Vec::with_capacity(8 + header.len() + data.len());
    out.extend_from_slice(&(header.len() as u64).to_le_bytes());
    out.extend_from_slice(&header);
    out.extend_from_slice(&data);
    out
}

/// Build a file from a header JSON text and a data buffer, padding the header with spaces
/// to a multiple of 8 (for the byte-literal loader tests).
pub fn raw_file(header: &str, data: &[u8]) -> Vec<u8> {
    let mut h = header.as_bytes().to_vec();
    while h.len() % 8 != 0 {
        h.push(b' ');
    }
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&h);
    out.extend_from_slice(data);
    out
}

/// Split a safetensors file into its header JSON (parsed) and its data buffer.
pub fn split(file: &[u8]) -> (serde_json::Value, Vec<u8>) {
    let n = u64::from_le_bytes(file[..8].try_into().expect("8 bytes")) as usize;
    let header: serde_json::Value = serde_json::from_slice(&file[8..8 + n]).expect("header json");
    (header, file[8 + n..].to_vec())
}

/// Re-assemble a file from an (edited) header JSON value and a data buffer.
pub fn join(header: &serde_json::Value, data: &[u8]) -> Vec<u8> {
    raw_file(&header.to_string(), data)
}

/// Parse `file`, let `edit` change the header JSON, and re-assemble it with the same data.
pub fn edit_header(file: &[u8], edit: impl FnOnce(&mut serde_json::Value)) -> Vec<u8> {
    let (mut h, data) = split(file);
    edit(&mut h);
    join(&h, &data)
}
