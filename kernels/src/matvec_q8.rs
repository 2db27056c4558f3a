//! q8_0 matvec. Weights: `q` i8 `[rows, cols]`, `scales` f16 `[rows, cols/QK]`;
//! `w[r, c] = q[r, c] * scales[r, c / QK]`. Activations stay f32.
use crate::matvec_q8::scalar as imp;
use half::f16;

/// out (rows) = dequant(q, scales) (rows, cols) · x (cols); `cols % QK == 0`.
pub fn matvec_q8(out: &mut [f32], q: &[i8], scales: &[f16], x: &[f32]) {
    imp::matvec_q8(out, q, scales, x)
}

/// Plain-loop reference, always compiled.
pub mod scalar {
    use crate::QK;
    use half::f16;
    /// Scalar `matvec_q8`.
    pub fn matvec_q8(out: &mut [f32], q: &[i8], scales: &[f16], x: &[f32]) {
        let cols = x.len();
        if cols == 0 {
            out.fill(0.0);
            return;
        }
        let groups = cols / QK;
        for ((o, row), srow) in out.iter_mut().zip(q.chunks_exact(cols)).zip(scales.chunks_exact(groups.max(1))) {
            let mut acc = 0.0f32;
            for ((qg, xg), s) in row.chunks_exact(QK).zip(x.chunks_exact(QK)).zip(srow) {
                let dot: f32 = qg.iter().zip(xg).map(|(&a, b)| a as f32 * b).sum();
                acc += dot * s.to_f32();
            }
            *o = acc;
        }
    }
}
