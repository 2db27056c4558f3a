//! q4_0 matvec. Weights: `q` u8 `[rows, cols/2]` (column 2j in the low nibble, 2j+1 in the
//! high nibble, value = nibble - 8), `scales` f16 `[rows, cols/QK]`.
use crate::matvec_q4::scalar as imp;
use half::f16;

/// out (rows) = dequant(q, scales) (rows, cols) · x (cols); `cols % QK == 0`.
pub fn matvec_q4(out: &mut [f32], q: &[u8], scales: &[f16], x: &[f32]) {
    imp::matvec_q4(out, q, scales, x)
}

/// Plain-loop reference, always compiled.
pub mod scalar {
    use crate::QK;
    use half::f16;
    /// Scalar `matvec_q4`.
    pub fn matvec_q4(out: &mut [f32], q: &[u8], scales: &[f16], x: &[f32]) {
        let cols = x.len();
        if cols == 0 {
            out.fill(0.0);
            return;
        }
        let groups = cols / QK;
        for ((o, row), srow) in out.iter_mut().zip(q.chunks_exact(cols / 2)).zip(scales.chunks_exact(groups.max(1))) {
            let mut acc = 0.0f32;
            for ((qg, xg), s) in row.chunks_exact(QK / 2).zip(x.chunks_exact(QK)).zip(srow) {
                let mut dot = 0.0f32;
                for (&b, xp) in qg.iter().zip(xg.chunks_exact(2)) {
                    dot += ((b & 0x0f) as i32 - 8) as f32 * xp[0];
                    dot += ((b >> 4) as i32 - 8) as f32 * xp[1];
                }
                acc += dot * s.to_f32();
            }
            *o = acc;
        }
    }
}
