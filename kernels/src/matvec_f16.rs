//! `out[r] = sum_c w[r, c] * x[c]` for an f16 matrix `w` `[rows, cols]`, f32 accumulation.
use crate::matvec_f16::scalar as imp;
use half::f16;

/// out (rows) = w (rows, cols, f16) · x (cols).
pub fn matvec_f16(out: &mut [f32], w: &[f16], x: &[f32]) {
    imp::matvec_f16(out, w, x)
}

/// Plain-loop reference, always compiled.
pub mod scalar {
    use half::f16;
    /// Scalar `matvec_f16`.
    pub fn matvec_f16(out: &mut [f32], w: &[f16], x: &[f32]) {
        let cols = x.len();
        if cols == 0 {
            out.fill(0.0);
            return;
        }
        for (o, row) in out.iter_mut().zip(w.chunks_exact(cols)) {
            *o = row.iter().zip(x).map(|(a, b)| a.to_f32() * b).sum();
        }
    }
}
