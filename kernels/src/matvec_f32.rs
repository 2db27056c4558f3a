//! `out[r] = sum_c w[r, c] * x[c]` for an f32 matrix `w` `[rows, cols]`, row-major.
use crate::matvec_f32::scalar as imp;

/// out (rows) = w (rows, cols) · x (cols).
pub fn matvec_f32(out: &mut [f32], w: &[f32], x: &[f32]) {
    imp::matvec_f32(out, w, x)
}

/// Plain-loop reference, always compiled.
pub mod scalar {
    /// Scalar `matvec_f32`.
    pub fn matvec_f32(out: &mut [f32], w: &[f32], x: &[f32]) {
        let cols = x.len();
        if cols == 0 {
            out.fill(0.0);
            return;
        }
        for (o, row) in out.iter_mut().zip(w.chunks_exact(cols)) {
            *o = row.iter().zip(x).map(|(a, b)| a * b).sum();
        }
    }
}
