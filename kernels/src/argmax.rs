//! Index of the largest element (first one on ties; NaN never wins).
//!
//! SIMD: a `wide` max over 8 lanes (NaN lanes dropped by `max`), then the first index
//! holding that value. 0 for an empty slice, or when nothing beats `-inf` (all `-inf` or
//! NaN), exactly as the reference's strict `>` scan.

/// Index of the largest value, 0 for an empty slice.
pub fn argmax(x: &[f32]) -> usize {
    // Thumb: `wide` has no SIMD backend there (plain arrays): the plain loop is
    // faster and smaller.
    if cfg!(target_arch = "arm") {
        return scalar::argmax(x);
    }
    let max = crate::math::max8(x);
    if max == f32::NEG_INFINITY {
        return 0;
    }
    x.iter().position(|&v| v == max).unwrap_or(0)
}

/// Plain-loop reference, always compiled.
pub mod scalar {
    /// Scalar `argmax`.
    pub fn argmax(x: &[f32]) -> usize {
        let mut best = 0;
        let mut best_v = f32::NEG_INFINITY;
        for (i, &v) in x.iter().enumerate() {
            if v > best_v {
                best = i;
                best_v = v;
            }
        }
        best
    }
}
