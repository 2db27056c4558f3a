//! GELU, tanh approximation: `0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))`, in place.
//!
//! SIMD: the identity `0.5 (1 + tanh u) = 1 / (1 + e^(-2u))` turns it into
//! `x / (1 + e^(-2u))`, one [`exp_f32x8`](crate::math::exp_f32x8) and one division a lane,
//! with no cancellation for negative `x` (where `1 + tanh u` would lose all its digits).
//! Relative error a few ulp (exp's ~1.4 ulp plus the division); measured against an f64
//! oracle in `tests/props.rs`. Special values follow the formula: `+inf -> +inf`,
//! `-inf -> NaN` (as `-inf * 0`), NaN stays NaN; for large negative `x` both give `-0`
//! or a value below 1e-30.
use crate::math::{exp_f32x8, map8};
use wide::f32x8;

const K: f32 = 0.797_884_6; // sqrt(2/pi)

/// In-place GELU (tanh approximation).
pub fn gelu_tanh(x: &mut [f32]) {
    // Thumb: `wide` has no SIMD backend there (plain arrays): the plain loop is
    // faster and smaller.
    if cfg!(target_arch = "arm") {
        return scalar::gelu_tanh(x);
    }
    map8(x, 0.0, |v| {
        let u = f32x8::splat(K) * (v * v * v).mul_add(f32x8::splat(0.044715), v);
        v / (f32x8::splat(1.0) + exp_f32x8(u * f32x8::splat(-2.0)))
    });
}

/// Plain-loop reference, always compiled.
pub mod scalar {
    /// Scalar `gelu_tanh` (`libm::tanhf`).
    pub fn gelu_tanh(x: &mut [f32]) {
        for v in x {
            let u = 0.797_884_6_f32 * (*v + 0.044715 * *v * *v * *v);
            *v = 0.5 * *v * (1.0 + libm::tanhf(u));
        }
    }
}
