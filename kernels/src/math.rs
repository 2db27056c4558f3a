//! Scalar math helpers (no std): exp, tanh, sqrt via `libm`.

/// e^x.
#[inline]
pub fn expf(x: f32) -> f32 {
    libm::expf(x)
}
