//! Writing and reading folio model files (docs/FORMAT.md) with the `safetensors` crate.
//!
//! Every file is written atomically (a temporary file in the same directory, fsync, then
//! rename), so a killed run never leaves a half-written model. The header lists
//! `__metadata__` (keys sorted) and then the tensors in data order, so the same weights
//! always give the same bytes. Reading accepts format 2, checked by folio-runtime itself,
//! and format 1 (config and vocabulary as JSON inside strings, q4_0 columns `2j, 2j + 1`
//! in one byte): `exporter convert` and `exporter quantize` upgrade old files.
use crate::data::Vocab;
use crate::quantize::{default_encoding, encode, Encoding, Stored};
use anyhow::{anyhow, bail, Context, Result};
use folio_kernels::quant::{dequantize_row_q4, dequantize_row_q8};
use folio_kernels::QK;
use folio_runtime::file::AlignedCopy;
use folio_runtime::{Config, MetaKey, Model};
use half::f16;
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The f32 master weights of a model with its config, vocabulary and training record.
#[derive(Clone, Debug)]
pub struct Master {
    /// Model shape.
    pub cfg: Config,
    /// Token characters.
    pub vocab: Vocab,
    /// name → (shape, row-major data).
    pub tensors: BTreeMap<String, (Vec<usize>, Vec<f32>)>,
    /// The `folio.train` object (training parameters and results).
    pub train: Value,
}

/// Per-tensor encodings of a file; a tensor not listed is stored F32.
pub type Plan = BTreeMap<String, Encoding>;

impl Master {
    /// The plan that stores every tensor at its default encoding for `target`.
    pub fn default_plan(&self, target: Encoding) -> Plan {
        self.tensors
            .iter()
            .filter(|(_, (s, _))| s.len() >= 2)
            .map(|(n, (s, _))| (n.clone(), default_encoding(n, s, target)))
            .collect()
    }

    /// The `__metadata__` of a format 2 file of this model.
    pub fn metadata(&self, label: &str, train: &Value) -> BTreeMap<String, String> {
        let c = &self.cfg;
        let value = |key: MetaKey| match key {
            MetaKey::Format => "2".to_string(),
            MetaKey::VocabSize => c.vocab_size.to_string(),
            MetaKey::BlockSize => c.block_size.to_string(),
            MetaKey::NEmbd => c.n_embd.to_string(),
            MetaKey::NHead => c.n_head.to_string(),
            MetaKey::NLayer => c.n_layer.to_string(),
            // The shortest decimal that reads back as the same f32.
            MetaKey::LayerNormEps => c.layer_norm_eps.to_string(),
            MetaKey::Activation => "gelu_tanh".to_string(),
            MetaKey::TiedEmbeddings => c.tied_embeddings.to_string(),
            MetaKey::Vocab => self.vocab.chars.iter().collect(),
            MetaKey::Dtype => label.to_string(),
            MetaKey::Train => canonical(train).to_string(),
        };
        MetaKey::all()
            .map(|k| (k.as_str().to_string(), value(k)))
            .collect()
    }

    /// The bytes of a folio file storing each tensor as `plan` says, with `folio.dtype` =
    /// `label` and `folio.train` = `train`.
    pub fn to_bytes(&self, plan: &Plan, label: &str, train: &Value) -> Result<Vec<u8>> {
        let mut stored: Vec<Stored> = Vec::new();
        for (name, (shape, data)) in &self.tensors {
            let enc = plan.get(name).copied().unwrap_or(Encoding::F32);
            stored.extend(encode(name, shape, data, enc)?);
        }
        serialize(&stored, self.metadata(label, train))
    }

    /// Writes the file for `plan` atomically at `path`.
    pub fn write(&self, path: &Path, plan: &Plan, label: &str, train: &Value) -> Result<()> {
        write_atomic(path, &self.to_bytes(plan, label, train)?)
    }
}

/// A folio file read back: its weights dequantised to f32 and how each was stored.
#[derive(Clone, Debug)]
pub struct Loaded {
    /// Config, vocabulary, f32 weights and `folio.train` (`null` when absent).
    pub master: Master,
    /// The encoding of every tensor.
    pub plan: Plan,
    /// `folio.dtype`.
    pub dtype: String,
    /// `folio.format`: 1 or 2.
    pub format: u32,
}

impl Loaded {
    /// True when every tensor is F32 (an f32 master, the input of `quantize`).
    pub fn is_f32(&self) -> bool {
        self.plan.values().all(|&e| e == Encoding::F32)
    }
}

/// Reads a folio file of format 1 or 2.
pub fn read(path: &Path) -> Result<Loaded> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    from_bytes(&bytes).with_context(|| format!("{} is not a folio file", path.display()))
}

/// Parses a folio file of format 1 or 2 from its bytes.
pub fn from_bytes(bytes: &[u8]) -> Result<Loaded> {
    let (_, header) = SafeTensors::read_metadata(bytes)?;
    let meta = header.metadata().clone().unwrap_or_default();
    let get = |k: &str| meta.get(k).with_context(|| format!("missing metadata {k}"));
    let format = match get("folio.format")?.as_str() {
        "1" => 1,
        "2" => 2,
        f => bail!("folio.format {f:?}: this exporter reads formats 1 and 2"),
    };
    let (cfg, vocab) = if format == 1 {
        format1_config(get("folio.config")?, get("folio.vocab")?)?
    } else {
        // The runtime checks the whole file, exactly as it will load it.
        let copy = AlignedCopy::new(bytes);
        let model = Model::from_bytes(copy.bytes()).map_err(|e| anyhow!("{e}"))?;
        let chars = model.tokenizer().chars().to_vec();
        (*model.config(), Vocab { chars })
    };
    let train = match meta.get("folio.train") {
        Some(s) => serde_json::from_str(s).context("folio.train")?,
        None => Value::Null,
    };
    let st = SafeTensors::deserialize(bytes)?;
    let (mut tensors, mut plan) = (BTreeMap::new(), Plan::new());
    for (name, view) in st.tensors() {
        let quantised = |t: TensorView| matches!(t.dtype(), Dtype::I8 | Dtype::U8);
        let weight = name.strip_suffix("_scale").map(|w| st.tensor(w));
        if weight.is_some_and(|w| w.is_ok_and(quantised)) {
            continue; // read with its weight
        }
        let (enc, values) =
            decode(&st, &name, &view, format).with_context(|| format!("tensor {name}"))?;
        let mut shape = view.shape().to_vec();
        if let (Encoding::Q4_0, Some(cols)) = (enc, shape.last_mut()) {
            *cols *= 2; // two codes a byte
        }
        tensors.insert(name.clone(), (shape, values));
        plan.insert(name, enc);
    }
    Ok(Loaded {
        master: Master {
            cfg,
            vocab,
            tensors,
            train,
        },
        plan,
        dtype: meta.get("folio.dtype").cloned().unwrap_or_default(),
        format,
    })
}

/// A file rewritten by [`convert`].
#[derive(Clone, Debug)]
pub struct Converted {
    /// The format 2 file.
    pub bytes: Vec<u8>,
    /// Values compared.
    pub values: usize,
    /// Values whose decoded value differs from the input's.
    pub changed: usize,
    /// The largest such difference.
    pub max_change: f32,
}

/// `loaded` as a format 2 file: every tensor re-encoded in its own encoding through
/// `folio_kernels::quant` (so a change of code layout is carried over), then read back and
/// compared with the input value by value. A q8_0/q4_0 group whose f16 scale is normal
/// comes back with the same scale and codes (its largest code is ±127, or the code for -8,
/// and reproduces the scale exactly); one with a subnormal scale may move by a few
/// subnormal steps, which `changed` counts.
pub fn convert(loaded: &Loaded) -> Result<Converted> {
    let m = &loaded.master;
    let label = if loaded.dtype.is_empty() {
        "mixed"
    } else {
        &loaded.dtype
    };
    let bytes = m.to_bytes(&loaded.plan, label, &m.train)?;
    let back = from_bytes(&bytes).context("reading the converted file back")?;
    let (mut values, mut changed, mut max_change) = (0, 0, 0f32);
    for (name, (_, a)) in &m.tensors {
        let b = &back.master.tensors.get(name).context("a tensor lost")?.1;
        for (x, y) in a.iter().zip(b) {
            values += 1;
            if x != y {
                changed += 1;
                max_change = max_change.max((x - y).abs());
            }
        }
    }
    Ok(Converted {
        bytes,
        values,
        changed,
        max_change,
    })
}

/// Format 1's `folio.config` and `folio.vocab` (JSON inside the strings), checked as the
/// runtime checks a format 2 file's.
fn format1_config(config: &str, vocab: &str) -> Result<(Config, Vocab)> {
    #[derive(serde::Deserialize)]
    struct Format1 {
        vocab_size: usize,
        block_size: usize,
        n_embd: usize,
        n_head: usize,
        n_layer: usize,
        layer_norm_eps: f32,
        activation: String,
        tied_embeddings: bool,
    }
    let f: Format1 = serde_json::from_str(config).context("folio.config")?;
    if f.activation != "gelu_tanh" {
        bail!(
            "folio.config activation {:?} is not gelu_tanh",
            f.activation
        );
    }
    let cfg = Config {
        vocab_size: f.vocab_size,
        block_size: f.block_size,
        n_embd: f.n_embd,
        n_head: f.n_head,
        n_layer: f.n_layer,
        layer_norm_eps: f.layer_norm_eps,
        tied_embeddings: f.tied_embeddings,
    };
    let sizes = [
        cfg.vocab_size,
        cfg.block_size,
        cfg.n_embd,
        cfg.n_head,
        cfg.n_layer,
    ];
    if sizes.contains(&0) || !(cfg.layer_norm_eps >= 0.0 && cfg.layer_norm_eps.is_finite()) {
        bail!("folio.config has a zero size or a bad layer_norm_eps: {config}");
    }
    cfg.validate().map_err(|e| anyhow!("folio.config: {e}"))?;
    let vocab = Vocab::from_json(vocab)?;
    if vocab.len() != cfg.vocab_size {
        bail!(
            "folio.vocab has {} entries, vocab_size is {}",
            vocab.len(),
            cfg.vocab_size
        );
    }
    Ok((cfg, vocab))
}

/// One tensor (with its `_scale` when quantised) as f32, and its encoding.
fn decode(
    st: &SafeTensors,
    name: &str,
    t: &TensorView,
    format: u32,
) -> Result<(Encoding, Vec<f32>)> {
    let d = t.data();
    let f16s = |d: &[u8]| -> Vec<f16> {
        d.chunks_exact(2)
            .map(|b| f16::from_le_bytes([b[0], b[1]]))
            .collect()
    };
    let enc = match t.dtype() {
        Dtype::F32 => {
            let v = d
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]));
            return Ok((Encoding::F32, v.collect()));
        }
        Dtype::F16 => return Ok((Encoding::F16, f16s(d).iter().map(|h| h.to_f32()).collect())),
        Dtype::I8 => Encoding::Q8_0,
        Dtype::U8 => Encoding::Q4_0,
        other => bail!("dtype {other:?}: folio files hold F32, F16, I8 and U8"),
    };
    let scale = st.tensor(&format!("{name}_scale")).context("no _scale")?;
    let &[rows, stored] = t.shape() else {
        bail!("a quantised tensor must be 2-D, not {:?}", t.shape());
    };
    let cols = if enc == Encoding::Q8_0 {
        stored
    } else {
        stored * 2
    };
    if cols % QK != 0 || scale.dtype() != Dtype::F16 || scale.shape() != [rows, cols / QK] {
        bail!(
            "shape {:?} with a {:?} {:?} scale",
            t.shape(),
            scale.dtype(),
            scale.shape()
        );
    }
    let scales = f16s(scale.data());
    let mut out = vec![0f32; rows * cols]; // (rows, cols)
    let rows_of = out
        .chunks_exact_mut(cols)
        .zip(scales.chunks_exact(cols / QK));
    for (r, (o, s)) in rows_of.enumerate() {
        let q = &d[r * stored..(r + 1) * stored];
        match (enc, format) {
            (Encoding::Q8_0, _) => {
                let q: Vec<i8> = q.iter().map(|&b| b as i8).collect();
                dequantize_row_q8(o, &q, s);
            }
            (_, 1) => dequantize_row_q4_format1(o, q, s),
            _ => dequantize_row_q4(o, q, s),
        }
    }
    Ok((enc, out))
}

/// A format 1 q4_0 row: column `2j` in the low nibble of byte `j`, `2j + 1` in the high.
fn dequantize_row_q4_format1(out: &mut [f32], q: &[u8], scales: &[f16]) {
    for ((o, &b), j) in out.chunks_exact_mut(2).zip(q).zip(0..) {
        let d = scales[2 * j / QK].to_f32();
        o[0] = ((b & 0x0f) as i32 - 8) as f32 * d;
        o[1] = ((b >> 4) as i32 - 8) as f32 * d;
    }
}

/// `x` with every object's keys sorted (serde_json keeps insertion order when its
/// `preserve_order` feature is on anywhere in the build; this makes the output fixed).
pub fn canonical(x: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match x {
        Value::Object(m) => {
            let sorted: BTreeMap<&String, Value> =
                m.iter().map(|(k, v)| (k, canonical(v))).collect();
            Value::Object(sorted.into_iter().map(|(k, v)| (k.clone(), v)).collect())
        }
        Value::Array(a) => Value::Array(a.iter().map(canonical).collect()),
        v => v.clone(),
    }
}

/// safetensors bytes of `stored` with metadata `meta`. The crate lays the tensors out
/// (largest alignment first, so every tensor is naturally aligned) and lists them in data
/// order after `__metadata__`, whose keys come from a `HashMap` in random order: the
/// header is re-emitted with them sorted, and padded with spaces to a multiple of 8.
pub fn serialize(stored: &[Stored], meta: BTreeMap<String, String>) -> Result<Vec<u8>> {
    let views: Vec<(String, TensorView<'_>)> = stored
        .iter()
        .map(|s| {
            Ok((
                s.name.clone(),
                TensorView::new(s.dtype, s.shape.clone(), &s.bytes)?,
            ))
        })
        .collect::<Result<_>>()?;
    let bytes = safetensors::serialize(views, Some(meta.clone().into_iter().collect()))?;
    let (n, header) = SafeTensors::read_metadata(&bytes)?;
    let mut text = format!("{{\"__metadata__\":{}", serde_json::to_string(&meta)?);
    for name in header.offset_keys() {
        let info = header.info(&name).context("a listed tensor")?;
        text += &format!(
            ",{}:{}",
            serde_json::to_string(&name)?,
            serde_json::to_string(info)?
        );
    }
    text.push('}');
    let mut text = text.into_bytes();
    text.resize(text.len().next_multiple_of(8), b' ');
    let mut out = Vec::with_capacity(8 + text.len() + bytes.len() - 8 - n);
    out.extend_from_slice(&(text.len() as u64).to_le_bytes());
    out.extend_from_slice(&text);
    out.extend_from_slice(&bytes[8 + n..]);
    Ok(out)
}

/// Writes `bytes` to `path` through `path.<pid>.tmp` in the same directory (fsync, then
/// rename): readers see the old file or the whole new one, never a part.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_with(path, |f| f.write_all(bytes))
}

/// [`write_atomic`] with a writer callback (the failure-injection tests pass one that fails).
pub fn write_atomic_with(
    path: &Path,
    write: impl FnOnce(&mut std::fs::File) -> std::io::Result<()>,
) -> Result<()> {
    let tmp = temp_path(path);
    let result = (|| -> Result<()> {
        let mut f =
            std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        write(&mut f).with_context(|| format!("writing {}", tmp.display()))?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)
            .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))?;
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// The temporary name [`write_atomic`] uses for `path` (same directory).
pub fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.{}.tmp", std::process::id()))
}

/// Files of one run, derived from `--out FILE` (`FILE` minus a `.safetensors` suffix = `BASE`).
#[derive(Clone, Debug)]
pub struct RunPaths {
    /// The exported model, `FILE`.
    pub out: PathBuf,
    /// The f32 master, `BASE.f32.safetensors`.
    pub master: PathBuf,
    /// The checkpoint, `BASE.ckpt.safetensors`.
    pub checkpoint: PathBuf,
    /// The evaluation log, `BASE.log.jsonl`.
    pub log: PathBuf,
    /// The finished run's `folio.train` metadata as a file, `BASE.train.json`.
    pub train_json: PathBuf,
}

impl RunPaths {
    /// The run's files for `--out out`.
    pub fn new(out: &Path) -> Self {
        let s = out.to_string_lossy();
        let base = s.strip_suffix(".safetensors").unwrap_or(&s).to_string();
        Self {
            out: out.to_path_buf(),
            master: PathBuf::from(format!("{base}.f32.safetensors")),
            checkpoint: PathBuf::from(format!("{base}.ckpt.safetensors")),
            log: PathBuf::from(format!("{base}.log.jsonl")),
            train_json: PathBuf::from(format!("{base}.train.json")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A complete model: V 3, T 2, C 32, 1 head, 1 layer, tied.
    fn master() -> Master {
        let cfg = Config {
            vocab_size: 3,
            block_size: 2,
            n_embd: 32,
            n_head: 1,
            n_layer: 1,
            layer_norm_eps: 1e-5,
            tied_embeddings: true,
        };
        let shapes: [(&str, &[usize]); 16] = [
            ("wte.weight", &[3, 32]),
            ("wpe.weight", &[2, 32]),
            ("h.0.ln_1.weight", &[32]),
            ("h.0.ln_1.bias", &[32]),
            ("h.0.attn.c_attn.weight", &[96, 32]),
            ("h.0.attn.c_attn.bias", &[96]),
            ("h.0.attn.c_proj.weight", &[32, 32]),
            ("h.0.attn.c_proj.bias", &[32]),
            ("h.0.ln_2.weight", &[32]),
            ("h.0.ln_2.bias", &[32]),
            ("h.0.mlp.c_fc.weight", &[128, 32]),
            ("h.0.mlp.c_fc.bias", &[128]),
            ("h.0.mlp.c_proj.weight", &[32, 128]),
            ("h.0.mlp.c_proj.bias", &[32]),
            ("ln_f.weight", &[32]),
            ("ln_f.bias", &[32]),
        ];
        let tensors = shapes
            .iter()
            .map(|&(name, shape)| {
                let n: usize = shape.iter().product();
                let ramp = (0..n)
                    .map(|i| ((i * 37 % 101) as f32 - 50.0) / 170.0)
                    .collect();
                (name.to_string(), (shape.to_vec(), ramp))
            })
            .collect();
        Master {
            cfg,
            vocab: Vocab {
                chars: vec!['a', 'b', 'c'],
            },
            tensors,
            train: serde_json::json!({"z": 1, "a": 2}),
        }
    }

    #[test]
    fn files_are_deterministic_in_data_order_and_read_back() {
        let m = master();
        let plan = m.default_plan(Encoding::F32);
        let a = m.to_bytes(&plan, "f32", &m.train).unwrap();
        for _ in 0..5 {
            assert_eq!(m.to_bytes(&plan, "f32", &m.train).unwrap(), a);
        }
        let (n, meta) = SafeTensors::read_metadata(&a).unwrap();
        assert_eq!(n % 8, 0);
        let header = std::str::from_utf8(&a[8..8 + n]).unwrap();
        assert!(
            header.starts_with("{\"__metadata__\":{\"folio.activation\""),
            "{header}"
        );
        // Tensors are listed in data order (format 2), metadata keys sorted.
        let pos = |k: &str| header.find(&format!("\"{k}\"")).unwrap();
        let order: Vec<usize> = meta.offset_keys().iter().map(|k| pos(k)).collect();
        assert!(order.windows(2).all(|w| w[0] < w[1]), "{header}");
        assert!(
            pos("folio.block_size") < pos("folio.dtype") && pos("folio.dtype") < pos("folio.vocab")
        );
        let back = from_bytes(&a).unwrap();
        assert_eq!(back.master.tensors, m.tensors);
        assert_eq!(back.master.cfg, m.cfg);
        assert_eq!(back.master.vocab, m.vocab);
        assert_eq!(back.master.train, m.train);
        assert_eq!(
            (back.format, back.dtype.as_str(), back.is_f32()),
            (2, "f32", true)
        );
    }

    #[test]
    fn quantised_files_keep_1d_f32_and_wpe_f16() {
        let m = master();
        let bytes = m
            .to_bytes(&m.default_plan(Encoding::Q4_0), "q4_0", &m.train)
            .unwrap();
        let st = SafeTensors::deserialize(&bytes).unwrap();
        assert_eq!(st.tensor("ln_f.bias").unwrap().dtype(), Dtype::F32);
        assert_eq!(st.tensor("wpe.weight").unwrap().dtype(), Dtype::F16);
        assert_eq!(st.tensor("wte.weight").unwrap().dtype(), Dtype::U8);
        assert_eq!(st.tensor("wte.weight_scale").unwrap().shape(), &[3, 1]);
        let back = from_bytes(&bytes).unwrap();
        assert!(!back.is_f32(), "a quantised file is not a master");
        assert_eq!(back.plan["wte.weight"], Encoding::Q4_0);
        assert_eq!(back.plan["wpe.weight"], Encoding::F16);
        assert!(!back.plan.contains_key("wte.weight_scale"));
    }

    /// `m` as a format 1 file: config and vocabulary JSON inside strings, q4_0 codes of
    /// columns `2j` and `2j + 1` in one byte.
    fn format1(m: &Master, plan: &Plan) -> Vec<u8> {
        let mut stored = Vec::new();
        for (name, (shape, x)) in &m.tensors {
            let enc = plan.get(name).copied().unwrap_or(Encoding::F32);
            let mut t = encode(name, shape, x, enc).unwrap();
            if enc == Encoding::Q4_0 {
                // Codes from the values the scales give, packed the format 1 way.
                let cols = shape[1];
                let mut out = vec![0f32; x.len()];
                let scales: Vec<f16> = t[1]
                    .bytes
                    .chunks(2)
                    .map(|b| f16::from_le_bytes([b[0], b[1]]))
                    .collect();
                for ((o, q), s) in out
                    .chunks_mut(cols)
                    .zip(t[0].bytes.chunks(cols / 2))
                    .zip(scales.chunks(cols / QK))
                {
                    dequantize_row_q4(o, q, s);
                }
                let code = |i: usize| ((out[i] / scales[i / QK].to_f32()).round() + 8.0) as u8;
                t[0].bytes = (0..x.len() / 2)
                    .map(|j| code(2 * j) | (code(2 * j + 1) << 4))
                    .collect();
            }
            stored.extend(t);
        }
        let c = &m.cfg;
        let config = serde_json::json!({"vocab_size": c.vocab_size, "block_size": c.block_size,
            "n_embd": c.n_embd, "n_head": c.n_head, "n_layer": c.n_layer, "layer_norm_eps": 1e-5,
            "activation": "gelu_tanh", "tied_embeddings": c.tied_embeddings});
        let vocab: Vec<String> = m.vocab.chars.iter().map(|c| c.to_string()).collect();
        let meta = [
            ("folio.format", "1".to_string()),
            ("folio.config", config.to_string()),
            ("folio.vocab", serde_json::to_string(&vocab).unwrap()),
            ("folio.dtype", "mixed".to_string()),
        ];
        serialize(&stored, meta.map(|(k, v)| (k.to_string(), v)).into()).unwrap()
    }

    #[test]
    fn convert_upgrades_format_1_losslessly() {
        let m = master();
        let mut plan = m.default_plan(Encoding::Q4_0);
        plan.insert("h.0.mlp.c_fc.weight".into(), Encoding::Q8_0);
        plan.insert("h.0.attn.c_proj.weight".into(), Encoding::F16);
        plan.insert("ln_f.bias".into(), Encoding::F16);
        let old = from_bytes(&format1(&m, &plan)).unwrap();
        assert_eq!((old.format, old.plan.len()), (1, m.tensors.len()));
        let new = convert(&old).unwrap();
        assert_eq!(
            (new.values, new.changed),
            (m.tensors.values().map(|t| t.1.len()).sum(), 0)
        );
        // Same encodings, same values, now format 2 (which the runtime loads).
        let back = from_bytes(&new.bytes).unwrap();
        assert_eq!(
            (back.format, &back.plan, &back.master.tensors),
            (2, &old.plan, &old.master.tensors)
        );
        // q8_0 codes are the very same bytes.
        let (a, b) = (
            SafeTensors::deserialize(&new.bytes).unwrap(),
            format1(&m, &plan),
        );
        let b = SafeTensors::deserialize(&b).unwrap();
        for name in ["h.0.mlp.c_fc.weight", "h.0.mlp.c_fc.weight_scale"] {
            assert_eq!(
                a.tensor(name).unwrap().data(),
                b.tensor(name).unwrap().data(),
                "{name}"
            );
        }
        // Converting again changes nothing.
        assert_eq!(convert(&back).unwrap().bytes, new.bytes);
    }

    #[test]
    fn convert_reports_what_a_subnormal_scale_changes() {
        // A q8_0 group whose largest magnitude is 1.501 * 127 subnormal f16 steps: its scale
        // rounds up to 2 steps, so its largest code is 95, and re-quantising finds 1 step.
        let mut m = master();
        let step = 2f32.powi(-24);
        let x = &mut m.tensors.get_mut("wte.weight").unwrap().1;
        x[..32].fill(0.0);
        x[0] = 1.501 * 127.0 * step;
        let mut plan = m.default_plan(Encoding::F32);
        plan.insert("wte.weight".into(), Encoding::Q8_0);
        let file = from_bytes(&m.to_bytes(&plan, "mixed", &m.train).unwrap()).unwrap();
        let new = convert(&file).unwrap();
        assert_eq!(new.changed, 1);
        assert!(
            new.max_change > 0.0 && new.max_change < 100.0 * step,
            "{}",
            new.max_change
        );
    }

    #[test]
    fn failed_write_leaves_neither_file_nor_temp() {
        let dir = std::env::temp_dir().join(format!("folio-atomic-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("m.safetensors");
        std::fs::write(&p, b"old").unwrap();
        let r = write_atomic_with(&p, |f| {
            f.write_all(b"half a mod")?;
            Err(std::io::Error::other("injected"))
        });
        assert!(r.is_err());
        assert_eq!(std::fs::read(&p).unwrap(), b"old");
        assert!(!temp_path(&p).exists());
        write_atomic(&p, b"new").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"new");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn run_paths_sit_beside_out() {
        let r = RunPaths::new(Path::new("runs/edge.safetensors"));
        assert_eq!(r.master, Path::new("runs/edge.f32.safetensors"));
        assert_eq!(r.checkpoint, Path::new("runs/edge.ckpt.safetensors"));
        assert_eq!(r.log, Path::new("runs/edge.log.jsonl"));
    }
}
