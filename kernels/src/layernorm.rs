//! LayerNorm over one vector: `out = (x - mean) / sqrt(var + eps) * w + b`, biased variance.
use half::f16;

/// LayerNorm with f32 affine parameters.
pub fn layernorm_f32(out: &mut [f32], x: &[f32], w: &[f32], b: &[f32], eps: f32) {
    let (mean, rstd) = stats(x, eps);
    for (((o, &v), &w), &b) in out.iter_mut().zip(x).zip(w).zip(b) {
        *o = (v - mean) * rstd * w + b;
    }
}

/// LayerNorm with f16 affine parameters.
pub fn layernorm_f16(out: &mut [f32], x: &[f32], w: &[f16], b: &[f16], eps: f32) {
    let (mean, rstd) = stats(x, eps);
    for (((o, &v), w), b) in out.iter_mut().zip(x).zip(w).zip(b) {
        *o = (v - mean) * rstd * w.to_f32() + b.to_f32();
    }
}

fn stats(x: &[f32], eps: f32) -> (f32, f32) {
    let n = x.len().max(1) as f32;
    let mean = x.iter().sum::<f32>() / n;
    let var = x.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / n;
    (mean, 1.0 / libm::sqrtf(var + eps))
}
