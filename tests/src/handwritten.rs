//! A second folio writer: raw bytes, no `safetensors` crate, and on purpose a different
//! layout from [`crate::fixture::Fixture::to_safetensors`], to show the loader depends on
//! the format (docs/FORMAT.md) and not on one writer's habits:
//!
//! - tensors in a shuffled order in the data section (not sorted by dtype, then name),
//!   header entries in that same order (format 2 requires it) with `__metadata__` among
//!   them rather than first;
//! - small unknown `U8` tensors in front and between tensors, so offsets are odd but still
//!   naturally aligned (an F16 at 2 mod 4, an F32 at 4 mod 8), plus an unknown F32 tensor;
//! - each entry's `dtype`/`shape`/`data_offsets` and the metadata keys in shuffled order,
//!   with whitespace and newlines between tokens;
//! - `folio.layer_norm_eps` in another notation (`1E-5`), `folio.vocab` with every
//!   character as a `\uXXXX` escape, and optionally `\u` escapes in the other strings too;
//! - the header padded with tabs/newlines/spaces so that the data section starts at 0, 4
//!   or 3 mod 8 (safetensors does not require padding; at 3 the runtime needs the file
//!   placed so the data is aligned, which [`crate::AlignedBytes::new`] and the CLI do).
//!
//! The files remain valid safetensors (contiguous offsets, exact lengths): the `safetensors`
//! crate and the f64 reference read them too.
//!
//! [`RawFile`] edits a header in place, keeping its order, for the byte-level attack tests;
//! [`sparse_model`] writes a zero model whose data is a hole, for the CLI's resource tests.
use crate::fixture::{tensor_shapes, Config, Fixture, StoredTensor};
use crate::rng::Rng;
use safetensors::tensor::Dtype;
use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::Value;

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
    /// Places `__metadata__` among the entries and shuffles the keys inside objects.
    pub key_seed: u64,
    /// Unknown U8 tensors before and between tensors (odd-but-aligned offsets); without
    /// them, tensors are grouped by alignment (shuffled within each group).
    pub fillers: bool,
    /// An unknown F32 tensor (`extra.unused`) and an unknown U8 one (`aa.notes`).
    pub extra_tensors: bool,
    /// Where `\u` escapes appear.
    pub escapes: Escapes,
    /// `(8 + header length) % 8`: 0 (the safetensors convention), 4, or 3.
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
            (
                "data at 3 mod 8",
                Layout {
                    data_start_mod8: 3,
                    order_seed: 19,
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

/// A metadata value written differently from the fixture writer: epsilon as `1E-5`,
/// the vocabulary as `\uXXXX` escapes (a JSON string body, quotes included).
fn meta_value(f: &Fixture, key: &str, value: &str, escape_letters: bool) -> String {
    match key {
        "folio.layer_norm_eps" => {
            json_string(&format!("{:E}", f.spec.config.layer_norm_eps), false)
        }
        "folio.vocab" => {
            let mut out = String::from("\"");
            for c in value.chars() {
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{u:04x}"));
                }
            }
            out + "\""
        }
        _ => json_string(value, escape_letters),
    }
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

    // Header entries, in data order, with `__metadata__` at a random place among them.
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
    let mut meta: Vec<String> = f
        .metadata
        .iter()
        .map(|(k, v)| {
            let value = meta_value(f, k, v, esc_values);
            format!("{}: {value}", json_string(k, esc_names))
        })
        .collect();
    shuffle(&mut meta, &mut key_rng);
    let at = key_rng.below(entries.len() + 1);
    entries.insert(
        at,
        format!(
            "{}:{{\n    {}\n  }}",
            json_string("__metadata__", esc_names),
            meta.join(",\n    ")
        ),
    );

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
    while !h.len().is_multiple_of(8) {
        h.push(b' ');
    }
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&h);
    out.extend_from_slice(data);
    out
}

/// A safetensors file as its header's top-level members, in file order, and its data
/// section. Indexing by key reads or writes a member (writing an absent key appends it);
/// [`RawFile::to_bytes`] writes it back, members in the same order.
#[derive(Clone, Debug, PartialEq)]
pub struct RawFile {
    /// `(key, value)` of each header member, in order.
    pub members: Vec<(String, Value)>,
    /// The data section.
    pub data: Vec<u8>,
}

struct Members(Vec<(String, Value)>);

impl<'de> Deserialize<'de> for Members {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Members;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Members, A::Error> {
                let mut members = Vec::new();
                while let Some(member) = map.next_entry()? {
                    members.push(member);
                }
                Ok(Members(members))
            }
        }
        d.deserialize_map(V)
    }
}

impl RawFile {
    /// Parse a file (panics if its header is not a JSON object).
    pub fn parse(file: &[u8]) -> Self {
        let n = u64::from_le_bytes(file[..8].try_into().expect("8 bytes")) as usize;
        let Members(members) = serde_json::from_slice(&file[8..8 + n]).expect("header json");
        RawFile {
            members,
            data: file[8 + n..].to_vec(),
        }
    }

    /// Remove a member and return its value (panics if absent).
    pub fn remove(&mut self, key: &str) -> Value {
        let i = self.members.iter().position(|(k, _)| k == key);
        self.members
            .remove(i.unwrap_or_else(|| panic!("no {key}")))
            .1
    }

    /// The header JSON text (members in order, no padding).
    pub fn header_text(&self) -> String {
        let items: Vec<String> = self
            .members
            .iter()
            .map(|(k, v)| format!("{}:{v}", Value::String(k.clone())))
            .collect();
        format!("{{{}}}", items.join(","))
    }

    /// The file: header padded with spaces to a multiple of 8, then the data.
    pub fn to_bytes(&self) -> Vec<u8> {
        raw_file(&self.header_text(), &self.data)
    }

    /// The file with the header padded so the data section starts at `mod8` (0..8) past a
    /// multiple of 8 (safetensors does not require any padding).
    pub fn to_bytes_with_data_at(&self, mod8: usize) -> Vec<u8> {
        let mut h = self.header_text();
        while (8 + h.len()) % 8 != mod8 {
            h.push(' ');
        }
        let mut out = (h.len() as u64).to_le_bytes().to_vec();
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(&self.data);
        out
    }
}

impl std::ops::Index<&str> for RawFile {
    type Output = Value;
    fn index(&self, key: &str) -> &Value {
        let m = self.members.iter().find(|(k, _)| k == key);
        &m.unwrap_or_else(|| panic!("no {key}")).1
    }
}

impl std::ops::IndexMut<&str> for RawFile {
    fn index_mut(&mut self, key: &str) -> &mut Value {
        match self.members.iter().position(|(k, _)| k == key) {
            Some(i) => &mut self.members[i].1,
            None => {
                self.members.push((key.to_string(), Value::Null));
                &mut self.members.last_mut().expect("just pushed").1
            }
        }
    }
}

/// Parse `file`, let `edit` change the header, and write it back with the same data.
pub fn edit_header(file: &[u8], edit: impl FnOnce(&mut RawFile)) -> Vec<u8> {
    let mut f = RawFile::parse(file);
    edit(&mut f);
    f.to_bytes()
}

/// Write a zero model of shape `config` (F32 tensors, tied or not) to `path` with the data
/// section left as a sparse hole, so a file can claim a `block_size` of 2^20 in a few KB of
/// disk. `vocab` is `folio.vocab` (`config.vocab_size` characters); `extra_meta` entries
/// (keys and raw JSON values) and `extra_tensors` (1-element F32, names as raw JSON string
/// bodies) are added; each `(tensor, index, value)` of `patch` is set in the data. LayerNorm
/// gains are 1, and `wte[3]` and `ln_f.bias` hold the same ±0.5 pattern, so every context
/// prefers token 3.
pub fn sparse_model(
    path: &std::path::Path,
    config: &Config,
    vocab: &str,
    extra_meta: &[(&str, &str)],
    extra_tensors: &[&str],
    patch: &[(&str, usize, f32)],
) -> std::io::Result<()> {
    use std::io::{Seek, SeekFrom, Write};
    let mut all = tensor_shapes(config);
    all.extend(extra_tensors.iter().map(|n| (n.to_string(), vec![1])));
    let json = |v: &str| Value::from(v).to_string();
    let mut meta: Vec<String> = config
        .metadata()
        .into_iter()
        .chain([("folio.vocab", vocab.to_string())])
        .map(|(k, v)| format!("\"{k}\": {}", json(&v)))
        .collect();
    meta.extend(extra_meta.iter().map(|(k, v)| format!("\"{k}\": {v}")));
    let (mut header, offsets) = f32_header(&meta.join(", "), &all);
    while header.len() % 8 != 0 {
        header.push(' ');
    }
    let start = 8 + header.len() as u64;
    let mut f = std::fs::File::create(path)?;
    f.write_all(&(header.len() as u64).to_le_bytes())?;
    f.write_all(header.as_bytes())?;
    f.set_len(start + offsets[all.len()])?;
    let c = config.n_embd;
    let gains = all.iter().filter(|(n, _)| {
        n.ends_with("ln_1.weight") || n.ends_with("ln_2.weight") || n == "ln_f.weight"
    });
    let mut values: Vec<(&str, usize, f32)> = gains
        .flat_map(|(n, s)| (0..s[0]).map(move |i| (n.as_str(), i, 1.0)))
        .collect();
    let pattern = |i: usize| 0.5 - (i % 2) as f32;
    values.extend((0..c).map(|i| ("wte.weight", 3 * c + i, pattern(i))));
    values.extend((0..c).map(|i| ("ln_f.bias", i, pattern(i))));
    for &(name, i, v) in values.iter().chain(patch) {
        let at = all.iter().position(|(n, _)| n == name);
        let at = at.ok_or_else(|| std::io::Error::other(format!("no tensor {name}")))?;
        f.seek(SeekFrom::Start(start + offsets[at] + 4 * i as u64))?;
        f.write_all(&v.to_le_bytes())?;
    }
    Ok(())
}

/// The header JSON text of `tensors` stored as F32, back to back in the order given, after
/// a `__metadata__` object of the raw JSON `members` (`"key": value, ...`), and the data
/// offset of each tensor followed by the data section's length.
pub fn f32_header(members: &str, tensors: &[(String, Vec<usize>)]) -> (String, Vec<u64>) {
    let mut header = format!("{{\"__metadata__\": {{{members}}}");
    let mut offsets = vec![0u64];
    for (name, shape) in tensors {
        let begin = *offsets.last().unwrap_or(&0);
        let end = begin + 4 * shape.iter().product::<usize>() as u64;
        header += &format!(
            ", \"{name}\": {{\"dtype\": \"F32\", \"shape\": {shape:?}, \"data_offsets\": [{begin}, {end}]}}"
        );
        offsets.push(end);
    }
    header.push('}');
    (header, offsets)
}
