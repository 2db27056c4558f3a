//! q4_0 matvec against int8 activations. Weights: codes `q` u8 `[rows, cols / 2]` and f16
//! scales `[rows, cols / QK]`; a group's 16 bytes hold its 32 columns as llama.cpp's Q4_0
//! does: byte `j` has column `j` in the low nibble and column `j + 16` in the high
//! nibble, `w[r, c] = (nibble - 8) * scales[r, c / QK]`. Activations: the int8 groups
//! `xq (cols)`, `xs (cols / QK)` of [`quantize_act`](crate::quantize_act::quantize_act).
//!
//! `out[r] = sum_g f32(isum_g) * (scales[r, g] * xs_g)` with `isum_g = sum_{c in g}
//! (nibble_c - 8) * xq[c]` exact in i32 and the float order of
//! [`quantize_act`](mod@crate::quantize_act); every path gives the bits of
//! [`scalar::matvec_q4`]:
//! - AVX2, 4 rows a pass: two groups a 32-byte load; `and 0x0f` gives both groups'
//!   columns 0-15, `>> 4` their columns 16-31; `vpmaddubsw(nibbles, x)` (u8 x i8 pairs)
//!   summed over the two halves, less the shared `vpmaddubsw(8, x)`, leaves per i16
//!   lane 4 products of `(nibble - 8) * x` (at most `4 * 8 * 127`), so three `vphaddw`
//!   reduce 8 groups in i16 (at most `16 * 8 * 127 < 2^15`) before one `vpmaddwd` to
//!   i32.
//! - NEON, 4 rows a pass: nibbles split (`and`, `ushr`), re-centred (`- 8`), then
//!   `smull`/`smlal` into i16 (4 products a lane) and `saddlp`; with `dotprod`, `sdot`.
//! - elsewhere (Cortex-M included) the scalar reference.
use half::f16;

/// out (rows) = dequant(q, scales) (rows, cols) · dequant(xq, xs) (cols).
// Thumb: one out-of-line copy, not one inlined per call site (flash).
#[cfg_attr(target_arch = "arm", inline(never))]
pub fn matvec_q4(out: &mut [f32], q: &[u8], scales: &[f16], xq: &[i8], xs: &[f32]) {
    simd!(matvec_q4(out, q, scales, xq, xs) else scalar::matvec_q4(out, q, scales, xq, xs))
}

/// Plain-loop reference, always compiled.
pub mod scalar {
    use crate::quantize_act::{scalar::row, Shape};
    use crate::QK;
    use half::f16;

    /// Scalar `matvec_q4`.
    pub fn matvec_q4(out: &mut [f32], q: &[u8], scales: &[f16], xq: &[i8], xs: &[f32]) {
        let Some(sh) = Shape::new(out, q.len(), scales.len(), xq.len(), xs.len(), 2) else {
            return;
        };
        let xg = xq.as_chunks::<QK>().0;
        let xs = xs.get(..sh.groups).unwrap_or(&[]);
        for ((o, w), s) in out
            .iter_mut()
            .take(sh.rows)
            .zip(q.chunks_exact(sh.row_bytes))
            .zip(scales.chunks_exact(sh.row_scales))
        {
            let isums = w
                .as_chunks::<{ QK / 2 }>()
                .0
                .iter()
                .zip(xg)
                .map(|(w, x)| dot(w, x));
            *o = row(isums, s, xs);
        }
    }

    /// `sum_j (lo(w[j]) - 8) * x[j] + (hi(w[j]) - 8) * x[j + 16]`, exact in i32.
    #[inline(always)]
    pub(crate) fn dot(w: &[u8; QK / 2], x: &[i8; QK]) -> i32 {
        let (lo, hi) = x.split_at(QK / 2);
        w.iter().zip(lo).zip(hi).fold(0i32, |a, ((&b, &l), &h)| {
            a + (i32::from(b & 0x0f) - 8) * i32::from(l) + (i32::from(b >> 4) - 8) * i32::from(h)
        })
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::*;
    use crate::arch::x86_64::{load_i8x32, load_u8x16, load_u8x32, rows4};
    use crate::QK;
    use core::arch::x86_64::*;

    /// Activations of groups `j`, `j + 1`: columns 0-15 of both, columns
    /// 16-31 of both, and `vpmaddubsw(8, x)` summed over the two (the `- 8` of the codes).
    #[derive(Clone, Copy)]
    struct PairX {
        lo: __m256i,
        hi: __m256i,
        eight: __m256i,
    }

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn pair_x(x0: &[i8; QK], x1: &[i8; QK]) -> PairX {
        let (x0, x1) = (load_i8x32(x0), load_i8x32(x1));
        let lo = _mm256_permute2x128_si256::<0x20>(x0, x1);
        let hi = _mm256_permute2x128_si256::<0x31>(x0, x1);
        let e = _mm256_set1_epi8(8);
        let eight = _mm256_add_epi16(_mm256_maddubs_epi16(e, lo), _mm256_maddubs_epi16(e, hi));
        PairX { lo, hi, eight }
    }

    /// One row's codes of groups `j`, `j + 1` (32 bytes: 16 of each) against their
    /// activations: i16 lanes 0-7 (group `j`) and 8-15 (`j + 1`), each the sum of 4
    /// products `(nibble - 8) * x`.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn pair_w(v: __m256i, x: PairX) -> __m256i {
        let nib = _mm256_set1_epi8(0x0f);
        let lo = _mm256_and_si256(v, nib);
        let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(v), nib);
        let p = _mm256_add_epi16(
            _mm256_maddubs_epi16(lo, x.lo),
            _mm256_maddubs_epi16(hi, x.hi),
        );
        _mm256_sub_epi16(p, x.eight)
    }

    /// Group sums of 4 rows from their 4 pairs of groups: three `vphaddw` levels in i16,
    /// `vpmaddwd` by 1 to i32 (lanes g0 g2 g4 g6 | g1 g3 g5 g7), then back to g0..g7.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn reduce(p: [[__m256i; 4]; 4]) -> [__m256i; 4] {
        let order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
        let mut out = [_mm256_setzero_si256(); 4];
        for k in 0..4 {
            let a = _mm256_hadd_epi16(p[0][k], p[1][k]);
            let b = _mm256_hadd_epi16(p[2][k], p[3][k]);
            let s = _mm256_madd_epi16(_mm256_hadd_epi16(a, b), _mm256_set1_epi16(1));
            out[k] = _mm256_permutevar8x32_epi32(s, order);
        }
        out
    }

    /// The i16 products of `P` pairs of groups of 4 rows (`p[j][k]`: pair `j`, row `k`);
    /// `w[k]` is row `k`'s codes of the `2P` groups.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn pairs<const P: usize>(w: [&[[u8; 32]; P]; 4], x: &[[i8; QK]]) -> [[__m256i; 4]; 4] {
        let mut p = [[_mm256_setzero_si256(); 4]; 4];
        for j in 0..P.min(4) {
            if let (Some(x0), Some(x1)) = (x.get(2 * j), x.get(2 * j + 1)) {
                let xv = pair_x(x0, x1);
                for k in 0..4 {
                    p[j][k] = pair_w(load_u8x32(&w[k][j]), xv);
                }
            }
        }
        p
    }

    /// Group sums of 4 rows over 8 groups.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn full(w: [&[[u8; QK / 2]; 8]; 4], x: &[[i8; QK]; 8]) -> [__m256i; 4] {
        // Each row's 8 groups as 4 pairs of groups (32 bytes a load).
        let w: [&[[u8; 32]; 4]; 4] = w.map(bytemuck::cast_ref);
        reduce(pairs(w, x))
    }

    /// Group sums of 4 rows over up to 4 groups (`x.len()`; lanes past them zero): pairs
    /// of groups as in [`full`], a lone last group with a zero partner.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn part(w: [&[[u8; QK / 2]]; 4], x: &[[i8; QK]]) -> [__m256i; 4] {
        let zero = [0i8; QK];
        let mut p = [[_mm256_setzero_si256(); 4]; 4];
        for (j, pj) in p.iter_mut().take(2).enumerate() {
            let Some(x0) = x.get(2 * j) else {
                break;
            };
            let xv = pair_x(x0, x.get(2 * j + 1).unwrap_or(&zero));
            for (pk, w) in pj.iter_mut().zip(w) {
                let w = w.get(2 * j..).unwrap_or(&[]);
                let v = match (w.first_chunk::<2>(), w.first()) {
                    (Some(v), _) => load_u8x32(bytemuck::cast_ref(v)),
                    (None, Some(v)) => load_u8x16(v),
                    _ => continue,
                };
                *pk = pair_w(v, xv);
            }
        }
        reduce(p)
    }

    /// Group sums of 4 rows over 4 groups (lanes 4-7 zero).
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn half(w: [&[[u8; QK / 2]; 4]; 4], x: &[[i8; QK]; 4]) -> [__m256i; 4] {
        let w: [&[[u8; 32]; 2]; 4] = w.map(bytemuck::cast_ref);
        reduce(pairs(w, x))
    }

    /// AVX2 `matvec_q4` (see the module header).
    ///
    /// # Safety
    /// The CPU must support AVX2, FMA and F16C.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn matvec_q4(out: &mut [f32], q: &[u8], scales: &[f16], xq: &[i8], xs: &[f32]) {
        rows4(
            out,
            q,
            scales,
            xq,
            xs,
            |w, x| full(w, x),
            |w, x| half(w, x),
            |w, x| part(w, x),
        );
    }
}

#[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
mod neon {
    use super::*;
    use crate::arch::aarch64::{load_u8x16, rows4_dot};
    use crate::QK;
    use core::arch::aarch64::*;

    /// 4 i32 partial sums of one group: nibbles split and re-centred to i8, then `sdot`
    /// with `dotprod`, else `smull`/`smlal` (4 products of at most `8 * 127` an i16
    /// lane) and `saddlp`.
    #[inline]
    #[target_feature(enable = "neon")]
    fn dot(w: &[u8; QK / 2], x: [int8x16_t; 2]) -> int32x4_t {
        let b = load_u8x16(w);
        let eight = vdupq_n_s8(8);
        let w0 = vsubq_s8(vreinterpretq_s8_u8(vandq_u8(b, vdupq_n_u8(0x0f))), eight);
        let w1 = vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8::<4>(b)), eight);
        #[cfg(target_feature = "dotprod")]
        {
            crate::arch::aarch64::sdot2([w0, w1], x)
        }
        #[cfg(not(target_feature = "dotprod"))]
        {
            let p = vmull_s8(vget_low_s8(w0), vget_low_s8(x[0]));
            let p = vmlal_high_s8(p, w0, x[0]);
            let p = vmlal_s8(p, vget_low_s8(w1), vget_low_s8(x[1]));
            vpaddlq_s16(vmlal_high_s8(p, w1, x[1]))
        }
    }

    /// NEON `matvec_q4` (see the module header).
    #[target_feature(enable = "neon")]
    pub fn matvec_q4(out: &mut [f32], q: &[u8], scales: &[f16], xq: &[i8], xs: &[f32]) {
        rows4_dot(out, q, scales, xq, xs, |w, x| dot(w, x));
    }
}
