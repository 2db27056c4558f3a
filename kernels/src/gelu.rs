//! GELU, tanh approximation: `0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))`, in place.
//!
//! Computed as `x / (1 + e^(-2u))` with `u = sqrt(2/pi) (x + 0.044715 x^3)` (the identity
//! `0.5 (1 + tanh u) = 1 / (1 + e^(-2u))`; no cancellation for negative `x`, where `1 +
//! tanh u` would lose all its digits), with the polynomial `exp` of [`crate::math`]
//! (about 1.4 ulp) and one division. Each step is one IEEE operation in a fixed order
//! (`x3 = (x * x) * x`, `u = K * (x + x3 * 0.044715)`, `e = exp(-2 * u)`, `x / (1 +
//! e)`), never fused, so the 8-lane path on the hosts and the scalar loop on Cortex-M
//! give the same bits. Error against the exact tanh GELU in f64, measured by
//! `gelu_error` in `tests/props.rs` over a sweep of `[-12, 12]` (2^21 points): at most
//! 1.3e-6 relative where `|gelu| >= 1e-3` (the worst near `x = -3.3`, where `e^(-2u)`
//! magnifies the f32 rounding of `u` by `2u ~ 8`; 2.3e-7 for `x > -1`), and 1.1e-9
//! absolute where `|gelu| < 1e-3` (the test asserts 2e-6 and 2e-9). Special values
//! follow the formula: `+inf -> +inf`, `-inf -> NaN` (as `-inf / inf`), NaN stays NaN;
//! for large negative `x` the result is `-0` or a value below 1e-30 in magnitude.
use crate::math::{exp_f32x8, map8};
use wide::f32x8;

const K: f32 = 0.797_884_6; // sqrt(2/pi)
const C: f32 = 0.044715;

/// In-place GELU (tanh approximation).
pub fn gelu_tanh(x: &mut [f32]) {
    // Thumb: `wide` has no SIMD backend there (plain arrays): the plain loop is
    // faster and smaller.
    if cfg!(target_arch = "arm") {
        return scalar::gelu_tanh(x);
    }
    map8(x, 0.0, |v| {
        let u = f32x8::splat(K) * (v + ((v * v) * v) * f32x8::splat(C));
        v / (f32x8::splat(1.0) + exp_f32x8(u * f32x8::splat(-2.0)))
    });
}

/// Plain-loop reference, always compiled: the same operations as the 8-lane path.
pub mod scalar {
    use super::{C, K};
    use crate::math::exp;

    /// Scalar `gelu_tanh`.
    pub fn gelu_tanh(x: &mut [f32]) {
        for v in x {
            let u = K * (*v + ((*v * *v) * *v) * C);
            *v /= 1.0 + exp(u * -2.0);
        }
    }
}
