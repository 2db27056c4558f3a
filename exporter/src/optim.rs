//! AdamW written on tensors (so its moments can be checkpointed), with nanoGPT's
//! global-norm gradient clipping.
use crate::hyper::Hyper;
use tch::{nn, Kind, Tensor};

/// AdamW with decoupled weight decay on the 2-D parameters (matrices and embeddings)
/// only, as nanoGPT's `configure_optimizers`.
pub struct AdamW {
    /// (name, parameter), sorted by name.
    pub params: Vec<(String, Tensor)>,
    /// First moments, one per parameter.
    pub m: Vec<Tensor>,
    /// Second moments, one per parameter.
    pub v: Vec<Tensor>,
    /// Steps taken (bias correction).
    pub t: u64,
}

impl AdamW {
    /// Zero moments for every variable of `vs`.
    pub fn new(vs: &nn::VarStore) -> Self {
        let mut params: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
        params.sort_by(|a, b| a.0.cmp(&b.0));
        let m = params.iter().map(|(_, p)| p.zeros_like()).collect();
        let v = params.iter().map(|(_, p)| p.zeros_like()).collect();
        Self { params, m, v, t: 0 }
    }

    /// Clears the gradients.
    pub fn zero_grad(&mut self) {
        for (_, p) in &mut self.params {
            p.zero_grad();
        }
    }

    /// Clips the global gradient norm to `clip` (if > 0), then takes one step at `lr`.
    /// Returns the norm before clipping.
    pub fn step(&mut self, h: &Hyper, lr: f64) -> f64 {
        tch::no_grad(|| {
            let grads: Vec<Tensor> = self.params.iter().map(|(_, p)| p.grad()).collect();
            let sq: Vec<Tensor> = grads.iter().map(|g| g.square().sum(Kind::Float)).collect();
            let norm = Tensor::stack(&sq, 0)
                .sum(Kind::Float)
                .sqrt()
                .double_value(&[]);
            let scale = if h.grad_clip > 0.0 && norm > h.grad_clip {
                h.grad_clip / (norm + 1e-6)
            } else {
                1.0
            };
            self.t += 1;
            let bc1 = 1.0 - h.beta1.powi(self.t as i32);
            let bc2 = 1.0 - h.beta2.powi(self.t as i32);
            for (((_, p), g), (m, v)) in self
                .params
                .iter_mut()
                .zip(&grads)
                .zip(self.m.iter_mut().zip(self.v.iter_mut()))
            {
                let g = g * scale;
                let _ = m.g_mul_scalar_(h.beta1).g_add_(&(&g * (1.0 - h.beta1)));
                let _ = v
                    .g_mul_scalar_(h.beta2)
                    .g_add_(&(g.square() * (1.0 - h.beta2)));
                if p.dim() >= 2 && h.weight_decay > 0.0 {
                    let _ = p.g_mul_scalar_(1.0 - lr * h.weight_decay);
                }
                let denom = (&*v / bc2).sqrt() + h.eps;
                let _ = p.g_sub_(&((&*m / bc1) / denom * lr));
            }
            norm
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    #[test]
    fn adamw_matches_the_closed_form_first_step() {
        // Step 1 of Adam moves each weight by lr * sign(g) (m/sqrt(v) = g/|g|), after the
        // decoupled decay w *= 1 - lr*wd on 2-D weights only.
        let vs = nn::VarStore::new(Device::Cpu);
        let w = vs.root().var("w", &[2, 2], nn::Init::Const(1.0));
        let b = vs.root().var("b", &[2], nn::Init::Const(1.0));
        let mut opt = AdamW::new(&vs);
        let h = Hyper {
            grad_clip: 0.0,
            weight_decay: 0.5,
            ..Hyper::preset("edge").unwrap()
        };
        let loss = (&w * Tensor::from_slice(&[1.0f32, -2.0, 3.0, -4.0]).view([2, 2]))
            .sum(Kind::Float)
            + (&b * 2.0).sum(Kind::Float);
        loss.backward();
        opt.step(&h, 0.1);
        let w: Vec<f32> = Vec::try_from(&w.view(-1)).unwrap();
        let b: Vec<f32> = Vec::try_from(&b).unwrap();
        let decayed = 1.0 - 0.1 * 0.5;
        let want_w = [decayed - 0.1, decayed + 0.1, decayed - 0.1, decayed + 0.1];
        for (a, e) in w.iter().zip(want_w) {
            assert!((*a as f64 - e).abs() < 1e-5, "{w:?}");
        }
        for a in b {
            assert!((a as f64 - 0.9).abs() < 1e-5);
        }
    }

    #[test]
    fn clipping_scales_the_global_norm() {
        let vs = nn::VarStore::new(Device::Cpu);
        let w = vs.root().var("w", &[2], nn::Init::Const(0.0));
        let mut opt = AdamW::new(&vs);
        let h = Hyper {
            grad_clip: 1.0,
            ..Hyper::preset("edge").unwrap()
        };
        (&w * Tensor::from_slice(&[3.0f32, 4.0]))
            .sum(Kind::Float)
            .backward();
        let norm = opt.step(&h, 0.0);
        assert!((norm - 5.0).abs() < 1e-6);
        // m = (1 - beta1) * g * 1/5 after clipping.
        let m: Vec<f32> = Vec::try_from(&opt.m[0]).unwrap();
        assert!((m[0] as f64 - 0.1 * 3.0 / 5.0).abs() < 1e-6, "{m:?}");
    }
}
