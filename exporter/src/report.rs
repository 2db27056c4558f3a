//! The quantisation report: the val loss of an encoding next to f32's, both computed by
//! folio-runtime itself on the same fixed, seeded val windows. When an encoding misses
//! its target, the most sensitive matrices are promoted (q4_0 → q8_0 → f16) one at a
//! time until it holds, giving a `mixed` file.
use crate::data::{Dataset, Split};
use crate::export::{Master, Plan};
use crate::quantize::{promote, Encoding};
use anyhow::{anyhow, Result};
use serde::Serialize;
use std::collections::BTreeMap;

/// Seed of the report's val windows (fixed: every file of every run is scored on the
/// same windows for a given block size).
pub const WINDOW_SEED: u64 = 0xF011_0000;

/// Fixed val windows of `block_size + 1` tokens: the model sees `block_size` tokens and
/// is scored at every position.
#[derive(Clone, Debug)]
pub struct EvalSet {
    /// (n_windows, block_size + 1) token ids.
    pub windows: Vec<Vec<u32>>,
}

impl EvalSet {
    /// `n` windows from the val split.
    pub fn new(data: &Dataset, n: usize, block_size: usize) -> Self {
        let val = data.split(Split::Val);
        let windows = data
            .fixed_windows(Split::Val, n, block_size + 1, WINDOW_SEED)
            .into_iter()
            .map(|i| val[i..(i + block_size + 1).min(val.len())].to_vec())
            .collect();
        Self { windows }
    }

    /// The first `n` windows.
    pub fn take(&self, n: usize) -> Self {
        Self {
            windows: self.windows.iter().take(n).cloned().collect(),
        }
    }

    /// Scored positions.
    pub fn positions(&self) -> usize {
        self.windows.iter().map(|w| w.len().saturating_sub(1)).sum()
    }
}

/// Mean cross-entropy (nats) of the folio file `bytes` over every position of `set`,
/// computed with folio-runtime (`Model::from_bytes`, `session.forward`).
pub fn runtime_loss(bytes: &[u8], set: &EvalSet) -> Result<f64> {
    // The runtime reads in place and needs its data section aligned.
    let copy = folio_runtime::file::AlignedCopy::new(bytes);
    let model = folio_runtime::Model::from_bytes(copy.bytes())
        .map_err(|e| anyhow!("runtime cannot load the file: {e}"))?;
    let mut scratch = vec![0u64; model.session_bytes().div_ceil(8)];
    let mut session = model
        .session(bytemuck::cast_slice_mut::<u64, u8>(&mut scratch))
        .map_err(|e| anyhow!("runtime session: {e}"))?;
    let (mut total, mut count) = (0.0f64, 0usize);
    for w in &set.windows {
        for (pos, pair) in w.windows(2).enumerate() {
            let logits = session
                .forward(pair[0], pos)
                .map_err(|e| anyhow!("runtime forward: {e}"))?;
            total += cross_entropy(logits, pair[1] as usize);
            count += 1;
        }
    }
    Ok(total / count.max(1) as f64)
}

/// `-log softmax(logits)[target]`, in f64.
pub fn cross_entropy(logits: &[f32], target: usize) -> f64 {
    let max = logits.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v)) as f64;
    let lse = max
        + logits
            .iter()
            .map(|&v| (v as f64 - max).exp())
            .sum::<f64>()
            .ln();
    lse - logits.get(target).copied().unwrap_or(f32::NAN) as f64
}

/// The allowed relative val-loss increase over f32 for an encoding (q8_0: 0.5%,
/// q4_0: 3%, f16: 0.5%).
pub fn tolerance(enc: Encoding) -> f64 {
    match enc {
        Encoding::F32 => 0.0,
        Encoding::F16 | Encoding::Q8_0 => 0.005,
        Encoding::Q4_0 => 0.03,
    }
}

/// The outcome for one exported encoding (stored in `folio.train.quantization`).
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// The requested encoding.
    #[serde(serialize_with = "encoding_name")]
    pub target: Encoding,
    /// `folio.dtype` of the written file (`mixed` if a tensor was promoted).
    pub dtype: String,
    /// Windows and positions scored.
    pub windows: usize,
    /// Positions scored.
    pub positions: usize,
    /// Runtime val loss of the f32 file.
    pub f32_val_loss: f64,
    /// Runtime val loss of the written file.
    pub val_loss: f64,
    /// `100 * (val_loss / f32_val_loss - 1)`.
    pub delta_pct: f64,
    /// The target, in percent.
    pub target_pct: f64,
    /// True when `delta_pct <= target_pct`.
    pub within_target: bool,
    /// Tensors stored more precisely than the default for `target`.
    #[serde(serialize_with = "encoding_names")]
    pub promoted: BTreeMap<String, Encoding>,
    /// Runtime val loss with every matrix at the default encoding (before promotions).
    pub uniform_val_loss: f64,
}

fn encoding_name<S: serde::Serializer>(e: &Encoding, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(e.as_str())
}

fn encoding_names<S: serde::Serializer>(
    m: &BTreeMap<String, Encoding>,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.collect_map(m.iter().map(|(k, e)| (k, e.as_str())))
}

/// Picks the plan for `target`: the default plan if it holds the target, else the default
/// plan with the most sensitive matrices promoted one at a time until it does.
/// `f32_loss` is the runtime loss of the f32 file on `set`; `tol` the allowed relative
/// increase ([`tolerance`] in the exporter). Each matrix is promoted at most once.
pub fn choose_plan(
    master: &Master,
    target: Encoding,
    set: &EvalSet,
    f32_loss: f64,
    tol: f64,
) -> Result<(Plan, Report)> {
    let base = master.default_plan(target);
    let loss_of = |plan: &Plan, set: &EvalSet| -> Result<f64> {
        runtime_loss(
            &master.to_bytes(plan, "mixed", &serde_json::Value::Null)?,
            set,
        )
    };
    let uniform = if target == Encoding::F32 {
        f32_loss
    } else {
        loss_of(&base, set)?
    };
    let within = |l: f64| l <= f32_loss * (1.0 + tol) + 1e-12;
    let mut plan = base.clone();
    let mut loss = uniform;
    if !within(loss) {
        // Sensitivity of each matrix: the loss with only it at the target encoding.
        let probe = set.take(set.windows.len().div_ceil(4));
        let probe_f32 = loss_of(&master.default_plan(Encoding::F32), &probe)?;
        let mut ranked = Vec::new();
        for (name, &enc) in &base {
            if enc != target {
                continue;
            }
            let mut only = master.default_plan(Encoding::F32);
            only.insert(name.clone(), enc);
            ranked.push((loss_of(&only, &probe)? - probe_f32, name.clone()));
        }
        ranked.sort_by(|a, b| b.0.total_cmp(&a.0));
        for (delta, name) in ranked {
            let enc = promote(plan[&name]);
            plan.insert(name.clone(), enc);
            loss = loss_of(&plan, set)?;
            folio_runtime::note!(
                "  promoted {name} to {enc} (alone it cost {delta:+.4}): val {loss:.4}"
            );
            if within(loss) {
                break;
            }
        }
    }
    let promoted: BTreeMap<String, Encoding> = plan
        .iter()
        .filter(|(n, e)| base.get(*n) != Some(e))
        .map(|(n, &e)| (n.clone(), e))
        .collect();
    let delta_pct = 100.0 * (loss / f32_loss - 1.0);
    let report = Report {
        target,
        dtype: if promoted.is_empty() {
            target.as_str().to_string()
        } else {
            "mixed".to_string()
        },
        windows: set.windows.len(),
        positions: set.positions(),
        f32_val_loss: f32_loss,
        val_loss: loss,
        delta_pct,
        target_pct: 100.0 * tol,
        within_target: within(loss),
        promoted,
        uniform_val_loss: uniform,
    };
    Ok((plan, report))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cross_entropy_of_uniform_logits_is_log_v() {
        let l = cross_entropy(&[0.5; 8], 3);
        assert!((l - 8f64.ln()).abs() < 1e-12);
        let peaked = cross_entropy(&[0.0, 20.0, 0.0], 1);
        assert!(peaked > 0.0 && peaked < 1e-8);
    }
}
