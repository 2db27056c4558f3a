//! In-place softmax, max-subtracted for stability: `x_i = e^(x_i - m) / sum_j e^(x_j - m)`
//! with `m = max_i x_i` (NaN ignored by the max, as `f32::max`).
//!
//! SIMD: `wide` max, then [`exp_f32x8`](crate::math::exp_f32x8) (~1.4 ulp; the scalar
//! reference uses `libm::expf`), a lane-parallel sum and one multiply by `1 / sum`. An
//! all `-inf` or `+inf` input gives NaN in both paths, as the plain formula does.
use crate::math::{exp_f32x8, map8, max8};
use wide::f32x8;

/// In-place softmax over `x`.
pub fn softmax(x: &mut [f32]) {
    // Thumb: `wide` has no SIMD backend there (plain arrays): the plain loop is
    // faster and smaller.
    if cfg!(target_arch = "arm") {
        return scalar::softmax(x);
    }
    if x.is_empty() {
        return;
    }
    let m = f32x8::splat(max8(x));
    let mut sum = f32x8::ZERO;
    // Padding with -inf makes the padded lanes exp(-inf) = 0 (or NaN when max is -inf,
    // where every real lane is NaN too).
    map8(x, f32::NEG_INFINITY, |v| {
        let e = exp_f32x8(v - m);
        sum += e;
        e
    });
    let sum = sum.to_array();
    // Lanes of a padded tail hold 0 and add nothing; NaN lanes poison the sum as in scalar.
    let inv = f32x8::splat(1.0 / sum.iter().sum::<f32>());
    map8(x, 0.0, |v| v * inv);
}

/// Plain-loop reference, always compiled.
pub mod scalar {
    /// Scalar `softmax` (`libm::expf`).
    pub fn softmax(x: &mut [f32]) {
        let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut sum = 0.0f32;
        for v in x.iter_mut() {
            *v = libm::expf(*v - max);
            sum += *v;
        }
        let inv = 1.0 / sum;
        for v in x.iter_mut() {
            *v *= inv;
        }
    }
}
