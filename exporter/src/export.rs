//! Writing and reading folio model files (docs/FORMAT.md) with the `safetensors` crate.
//!
//! Every file is written atomically (a temporary file in the same directory, fsync, then
//! rename), so a killed run never leaves a half-written model. The header is re-emitted
//! with sorted keys so the same weights always give the same bytes.
use crate::data::Vocab;
use crate::model::Config;
use crate::quantize::{default_encoding, encode, Encoding, Stored};
use anyhow::{bail, Context, Result};
use safetensors::tensor::TensorView;
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
    pub train: serde_json::Value,
}

/// Per-tensor encodings of a file: only the 2-D tensors are listed (1-D stay F32).
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

    /// The bytes of a folio file storing each tensor as `plan` says (F32 when unlisted),
    /// with `folio.dtype` = `label` and `folio.train` = `train`.
    pub fn to_bytes(&self, plan: &Plan, label: &str, train: &serde_json::Value) -> Result<Vec<u8>> {
        let mut stored: Vec<Stored> = Vec::new();
        for (name, (shape, data)) in &self.tensors {
            let enc = plan.get(name).copied().unwrap_or(Encoding::F32);
            stored.extend(encode(name, shape, data, enc)?);
        }
        let mut meta = BTreeMap::new();
        meta.insert("folio.format".to_string(), "1".to_string());
        meta.insert("folio.config".to_string(), self.cfg.to_json());
        meta.insert("folio.vocab".to_string(), self.vocab.to_json());
        meta.insert("folio.dtype".to_string(), label.to_string());
        meta.insert("folio.train".to_string(), canonical(train).to_string());
        serialize_sorted(&stored, meta)
    }

    /// Writes the file for `plan` atomically at `path`.
    pub fn write(
        &self,
        path: &Path,
        plan: &Plan,
        label: &str,
        train: &serde_json::Value,
    ) -> Result<()> {
        write_atomic(path, &self.to_bytes(plan, label, train)?)
    }

    /// Reads an f32 master (any folio file whose tensors are all F32).
    pub fn read(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        Self::from_bytes(&bytes)
            .with_context(|| format!("{} is not an f32 folio file", path.display()))
    }

    /// Parses an f32 master from file bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let (_, header) = safetensors::SafeTensors::read_metadata(bytes)?;
        let meta = header.metadata().clone().unwrap_or_default();
        let get = |k: &str| meta.get(k).with_context(|| format!("missing metadata {k}"));
        let cfg: Config = serde_json::from_str(get("folio.config")?).context("folio.config")?;
        let vocab = Vocab::from_json(get("folio.vocab")?)?;
        let train = match meta.get("folio.train") {
            Some(s) => serde_json::from_str(s).context("folio.train")?,
            None => serde_json::Value::Null,
        };
        let st = safetensors::SafeTensors::deserialize(bytes)?;
        let mut tensors = BTreeMap::new();
        for (name, view) in st.tensors() {
            if view.dtype() != safetensors::Dtype::F32 {
                bail!(
                    "tensor {name} is {:?}, not F32: quantize from the f32 master",
                    view.dtype()
                );
            }
            let data: Vec<f32> = view
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            tensors.insert(name, (view.shape().to_vec(), data));
        }
        Ok(Self {
            cfg,
            vocab,
            tensors,
            train,
        })
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

/// safetensors bytes of `stored` with metadata `meta`, header keys sorted. The crate
/// lays the tensors out (largest alignment first, so every tensor is naturally aligned);
/// its header JSON (a HashMap, in random order) is then re-emitted sorted and re-padded.
pub fn serialize_sorted(stored: &[Stored], meta: BTreeMap<String, String>) -> Result<Vec<u8>> {
    let views: Vec<(String, TensorView<'_>)> = stored
        .iter()
        .map(|s| {
            Ok((
                s.name.clone(),
                TensorView::new(s.dtype.safetensors(), s.shape.clone(), &s.bytes)?,
            ))
        })
        .collect::<Result<_>>()?;
    let bytes = safetensors::serialize(views, Some(meta.into_iter().collect()))?;
    let n = u64::from_le_bytes(bytes[..8].try_into()?) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n])?;
    let mut text = serde_json::to_vec(&canonical(&header))?;
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
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn master() -> Master {
        let cfg = Config {
            vocab_size: 3,
            block_size: 2,
            n_embd: 32,
            n_head: 1,
            n_layer: 0,
            layer_norm_eps: 1e-5,
            activation: "gelu_tanh".into(),
            tied_embeddings: true,
        };
        let mut tensors = BTreeMap::new();
        let ramp = |n: usize| (0..n).map(|i| i as f32 * 0.01 - 0.3).collect::<Vec<_>>();
        tensors.insert("wte.weight".into(), (vec![3, 32], ramp(96)));
        tensors.insert("wpe.weight".into(), (vec![2, 32], ramp(64)));
        tensors.insert("ln_f.weight".into(), (vec![32], ramp(32)));
        tensors.insert("ln_f.bias".into(), (vec![32], ramp(32)));
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
    fn files_are_deterministic_sorted_and_read_back() {
        let m = master();
        let plan = m.default_plan(Encoding::F32);
        let a = m.to_bytes(&plan, "f32", &m.train).unwrap();
        for _ in 0..5 {
            assert_eq!(m.to_bytes(&plan, "f32", &m.train).unwrap(), a);
        }
        let n = u64::from_le_bytes(a[..8].try_into().unwrap()) as usize;
        assert_eq!(n % 8, 0);
        let header = std::str::from_utf8(&a[8..8 + n]).unwrap();
        let pos = |k: &str| header.find(k).unwrap();
        assert!(pos("__metadata__") < pos("ln_f.bias") && pos("ln_f.bias") < pos("wte.weight"));
        assert!(
            pos("folio.config") < pos("folio.dtype") && pos("folio.dtype") < pos("folio.vocab")
        );
        let back = Master::from_bytes(&a).unwrap();
        assert_eq!(back.tensors, m.tensors);
        assert_eq!(back.cfg, m.cfg);
        assert_eq!(back.vocab, m.vocab);
        assert_eq!(back.train, m.train);
    }

    #[test]
    fn quantised_files_keep_1d_f32_and_wpe_f16() {
        let m = master();
        let bytes = m
            .to_bytes(&m.default_plan(Encoding::Q4_0), "q4_0", &m.train)
            .unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        assert_eq!(
            st.tensor("ln_f.bias").unwrap().dtype(),
            safetensors::Dtype::F32
        );
        assert_eq!(
            st.tensor("wpe.weight").unwrap().dtype(),
            safetensors::Dtype::F16
        );
        assert_eq!(
            st.tensor("wte.weight").unwrap().dtype(),
            safetensors::Dtype::U8
        );
        assert_eq!(st.tensor("wte.weight_scale").unwrap().shape(), &[3, 1]);
        assert!(
            Master::from_bytes(&bytes).is_err(),
            "a quantised file is not a master"
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
