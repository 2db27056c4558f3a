//! Training checkpoints: a safetensors file (`BASE.ckpt.safetensors`) with the f32
//! master weights under their own names, the AdamW moments as `adam_m.NAME` /
//! `adam_v.NAME`, and `folio.checkpoint` metadata (hyper-parameters, step, batch RNG
//! state, times, data sha256). Written atomically after every evaluation.
use crate::export::{serialize, write_atomic};
use crate::hyper::Hyper;
use crate::optim::AdamW;
use crate::quantize::Stored;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use tch::{Device, Kind, Tensor};

/// Steps, times and the last loss estimates of a run.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// Optimiser steps done.
    pub step: usize,
    /// Last estimated train loss.
    pub train_loss: f64,
    /// Last estimated val loss.
    pub val_loss: f64,
    /// Wall seconds of the run so far (all resumed parts).
    pub total_seconds: f64,
    /// Seconds in training steps.
    pub train_seconds: f64,
    /// Seconds in evaluations.
    pub eval_seconds: f64,
}

#[derive(Serialize, Deserialize)]
struct Meta {
    hyper: Hyper,
    progress: Progress,
    rng_state: u64,
    adam_t: u64,
    data_sha256: String,
}

/// A checkpoint read back.
pub struct Checkpoint {
    /// The run's hyper-parameters.
    pub hyper: Hyper,
    /// Where the run was.
    pub progress: Progress,
    /// The batch generator's state.
    pub rng_state: u64,
    /// sha256 of the training text.
    pub data_sha256: String,
    adam_t: u64,
    tensors: HashMap<String, (Vec<usize>, Vec<f32>)>,
}

/// A tensor's data as f32 on the CPU.
pub fn to_f32(t: &Tensor) -> Result<Vec<f32>> {
    let flat = t
        .to_device(Device::Cpu)
        .to_kind(Kind::Float)
        .contiguous()
        .view(-1);
    Ok(Vec::<f32>::try_from(&flat)?)
}

fn stored(name: String, t: &Tensor) -> Result<Stored> {
    let shape = t.size().iter().map(|&d| d as usize).collect();
    let bytes = to_f32(t)?.iter().flat_map(|v| v.to_le_bytes()).collect();
    Ok(Stored {
        name,
        dtype: safetensors::Dtype::F32,
        shape,
        bytes,
    })
}

/// Writes the checkpoint of the run atomically.
pub fn write(
    path: &Path,
    vs: &tch::nn::VarStore,
    opt: &AdamW,
    hyper: &Hyper,
    progress: &Progress,
    rng_state: u64,
    data_sha256: &str,
) -> Result<()> {
    let mut tensors = Vec::new();
    for (name, t) in vs.variables() {
        tensors.push(stored(name, &t)?);
    }
    for ((name, _), (m, v)) in opt.params.iter().zip(opt.m.iter().zip(&opt.v)) {
        tensors.push(stored(format!("adam_m.{name}"), m)?);
        tensors.push(stored(format!("adam_v.{name}"), v)?);
    }
    let meta = Meta {
        hyper: hyper.clone(),
        progress: progress.clone(),
        rng_state,
        adam_t: opt.t,
        data_sha256: data_sha256.to_string(),
    };
    let mut md = BTreeMap::new();
    md.insert(
        "folio.checkpoint".to_string(),
        serde_json::to_string(&meta)?,
    );
    write_atomic(path, &serialize(&tensors, md)?)
        .with_context(|| format!("writing checkpoint {}", path.display()))
}

impl Checkpoint {
    /// Reads a checkpoint file.
    pub fn read(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path)?;
        let (_, header) = safetensors::SafeTensors::read_metadata(&bytes)?;
        let meta_s = header
            .metadata()
            .as_ref()
            .and_then(|m| m.get("folio.checkpoint"))
            .context("not a folio checkpoint (no folio.checkpoint metadata)")?;
        let meta: Meta = serde_json::from_str(meta_s)?;
        let st = safetensors::SafeTensors::deserialize(&bytes)?;
        let mut tensors = HashMap::new();
        for (name, view) in st.tensors() {
            let data = view
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            tensors.insert(name, (view.shape().to_vec(), data));
        }
        Ok(Self {
            hyper: meta.hyper,
            progress: meta.progress,
            rng_state: meta.rng_state,
            data_sha256: meta.data_sha256,
            adam_t: meta.adam_t,
            tensors,
        })
    }

    /// Copies the weights and the AdamW moments into `opt` (whose parameters are the
    /// variables of a freshly built model of the same shape).
    pub fn restore(&self, opt: &mut AdamW) -> Result<()> {
        let get = |name: &str, like: &Tensor| -> Result<Tensor> {
            let (shape, data) = self
                .tensors
                .get(name)
                .with_context(|| format!("checkpoint lacks {name}"))?;
            let want: Vec<usize> = like.size().iter().map(|&d| d as usize).collect();
            if *shape != want {
                bail!("checkpoint {name} has shape {shape:?}, model wants {want:?}");
            }
            Ok(Tensor::from_slice(data)
                .view(like.size().as_slice())
                .to_device(like.device()))
        };
        tch::no_grad(|| -> Result<()> {
            for ((name, p), (m, v)) in opt
                .params
                .iter_mut()
                .zip(opt.m.iter_mut().zip(opt.v.iter_mut()))
            {
                p.copy_(&get(name, p)?);
                m.copy_(&get(&format!("adam_m.{name}"), m)?);
                v.copy_(&get(&format!("adam_v.{name}"), v)?);
            }
            Ok(())
        })?;
        opt.t = self.adam_t;
        Ok(())
    }
}
