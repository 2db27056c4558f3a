//! LayerNorm over one vector: `out = (x - mean) / sqrt(var + eps) * w + b`, biased variance.
//!
//! Two passes as the reference (mean, then the mean of squared deviations, which is
//! stable where `E[x^2] - mean^2` is not), each a `wide` lane-parallel sum; then one
//! fused `(x - mean) * rstd * w + b` pass. f16 parameters are widened by
//! [`widen_f16x8`](crate::convert::widen_f16x8). Writes `min(out, x, w, b)` elements; the statistics use all of
//! `x`.
use crate::convert::widen_f16x8;
use half::f16;
use wide::f32x8;

/// LayerNorm with f32 affine parameters.
pub fn layernorm_f32(out: &mut [f32], x: &[f32], w: &[f32], b: &[f32], eps: f32) {
    // Thumb: `wide` has no SIMD backend there (plain arrays): the plain loop is
    // faster and smaller.
    if cfg!(target_arch = "arm") {
        return scalar::layernorm_f32(out, x, w, b, eps);
    }
    layernorm(out, x, w, b, eps)
}

/// LayerNorm with f16 affine parameters.
pub fn layernorm_f16(out: &mut [f32], x: &[f32], w: &[f16], b: &[f16], eps: f32) {
    if cfg!(target_arch = "arm") {
        return scalar::layernorm_f16(out, x, w, b, eps);
    }
    layernorm(out, x, w, b, eps)
}

/// An affine parameter type: f32, or f16 widened exactly.
pub(crate) trait Param: Copy {
    /// 8 parameters as f32 lanes.
    fn lanes(p: &[Self; 8]) -> f32x8;
    /// One parameter as f32.
    fn f32(self) -> f32;
}

impl Param for f32 {
    #[inline(always)]
    fn lanes(p: &[f32; 8]) -> f32x8 {
        f32x8::from(*p)
    }
    #[inline(always)]
    fn f32(self) -> f32 {
        self
    }
}

impl Param for f16 {
    #[inline(always)]
    fn lanes(p: &[f16; 8]) -> f32x8 {
        widen_f16x8(p)
    }
    #[inline(always)]
    fn f32(self) -> f32 {
        self.to_f32()
    }
}

/// The SIMD path of both: lanes of 8, then the tail element by element.
#[inline(always)]
fn layernorm<P: Param>(out: &mut [f32], x: &[f32], w: &[P], b: &[P], eps: f32) {
    let (mean, rstd) = stats(x, eps);
    let n = out.len().min(x.len()).min(w.len()).min(b.len());
    let (o8, ot) = out[..n].as_chunks_mut::<8>();
    let ((x8, xt), (w8, wt), (b8, bt)) = (
        x[..n].as_chunks::<8>(),
        w[..n].as_chunks::<8>(),
        b[..n].as_chunks::<8>(),
    );
    let (m, r) = (f32x8::splat(mean), f32x8::splat(rstd));
    for (((o, xv), wv), bv) in o8.iter_mut().zip(x8).zip(w8).zip(b8) {
        let (wv, bv) = (P::lanes(wv), P::lanes(bv));
        *o = ((f32x8::from(*xv) - m) * r).mul_add(wv, bv).to_array();
    }
    for (((o, &v), &w), &b) in ot.iter_mut().zip(xt).zip(wt).zip(bt) {
        *o = (v - mean) * rstd * w.f32() + b.f32();
    }
}

fn stats(x: &[f32], eps: f32) -> (f32, f32) {
    let n = x.len().max(1) as f32;
    let (x8, xt) = x.as_chunks::<8>();
    let mut s = f32x8::ZERO;
    for c in x8 {
        s += f32x8::from(*c);
    }
    let mean = (s.reduce_add() + xt.iter().sum::<f32>()) / n;
    let m = f32x8::splat(mean);
    let mut q = f32x8::ZERO;
    for c in x8 {
        let d = f32x8::from(*c) - m;
        q = d.mul_add(d, q);
    }
    let var = (q.reduce_add() + xt.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>()) / n;
    (mean, 1.0 / libm::sqrtf(var + eps))
}

/// Plain-loop reference, always compiled.
pub mod scalar {
    use half::f16;

    /// Scalar `layernorm_f32`.
    pub fn layernorm_f32(out: &mut [f32], x: &[f32], w: &[f32], b: &[f32], eps: f32) {
        let (mean, rstd) = stats(x, eps);
        for (((o, &v), &w), &b) in out.iter_mut().zip(x).zip(w).zip(b) {
            *o = (v - mean) * rstd * w + b;
        }
    }

    /// Scalar `layernorm_f16`.
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
}
