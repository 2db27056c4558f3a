//! q4_0 matvec. Weights: `q` u8 `[rows, cols/2]` (column 2j in the low nibble, 2j+1 in the
//! high nibble, value = nibble - 8), `scales` f16 `[rows, cols/QK]`.
//!
//! Shape rules as [`matvec_q8`](crate::matvec_q8). The SIMD paths are the generic f32
//! loops `matvec_q::<true, _>` in `matvec_q8.rs` (q8_0's own paths moved to i16
//! activations); only the group loader differs from their q8_0 form: a group's 16 bytes are split
//! into low and high nibbles (`and`, shift), interleaved back to column order (AVX2
//! `punpck{l,h}bw`, NEON `zip1/zip2`), re-centred by `- 8` and widened to f32.
//!
//! Activations stay f32 for q4_0 (unlike q8_0's i16): q4_0 runs on the Cortex-M3 board,
//! which has neither DSP multiplies nor an FPU, so an integer dot product buys little there
//! and the host paths stay as they were. On thumb targets the scalar loop runs (`wide` has
//! no SIMD backend there).
use half::f16;

/// out (rows) = dequant(q, scales) (rows, cols) · x (cols); `cols % QK == 0`.
// Thumb: one out-of-line copy, not one inlined per call site (flash).
#[cfg_attr(target_arch = "arm", inline(never))]
pub fn matvec_q4(out: &mut [f32], q: &[u8], scales: &[f16], x: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    if crate::arch::x86_64::enabled() {
        // SAFETY: `enabled()` is true only when AVX2, FMA and F16C are available
        // (enabled at compile time, or detected on this CPU).
        return unsafe { crate::matvec_q8::avx2::matvec_q::<true, 1>(out, q, scales, x) };
    }
    #[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
    {
        // SAFETY: NEON is enabled at compile time (the `cfg` above).
        unsafe { crate::matvec_q8::neon::matvec_q::<true, 1>(out, q, scales, x) }
    }
    // Thumb: `wide` has no backend there (plain arrays, 2-3x slower than the loop).
    #[cfg(target_arch = "arm")]
    {
        scalar::matvec_q4(out, q, scales, x)
    }
    #[cfg(not(any(
        all(target_arch = "aarch64", target_feature = "neon"),
        target_arch = "arm"
    )))]
    {
        crate::matvec_q8::portable::matvec_q::<true>(out, q, scales, x)
    }
}

/// Plain-loop reference, always compiled.
pub mod scalar {
    use crate::QK;
    use half::f16;
    /// Scalar `matvec_q4`.
    pub fn matvec_q4(out: &mut [f32], q: &[u8], scales: &[f16], x: &[f32]) {
        let cols = x.len();
        let groups = cols / QK;
        if groups == 0 {
            out.fill(0.0);
            return;
        }
        for ((o, row), srow) in out
            .iter_mut()
            .zip(q.chunks_exact(cols / 2))
            .zip(scales.chunks_exact(groups))
        {
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
