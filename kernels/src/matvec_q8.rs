//! q8_0 matvec. Weights: `q` i8 `[rows, cols]`, `scales` f16 `[rows, cols/QK]`;
//! `w[r, c] = q[r, c] * scales[r, c / QK]`. Activations stay f32.
//!
//! `out[r] = sum_g scales[r, g] * sum_{c in group g} q[r, c] * x[c]`: each 32-column group
//! is widened to f32 (AVX2 `vpmovsxbd`/`vcvtdq2ps`, NEON `sxtl`/`scvtf`), dotted with
//! `x` by FMA, and the group sum is scaled once. `cols = x.len()`, `groups = cols / QK`
//! (a partial last group is ignored; `groups == 0` gives zeros), `rows = min(out.len(),
//! q.len() / cols, scales.len() / groups)`, rows past that are left as they are. The SIMD
//! paths take 4 rows at a time so the `x` group loaded once feeds 4 rows.
//!
//! Why the activations stay f32 (no llama.cpp-style q8_0 `x` with integer dot products):
//! quantising `x` adds a second rounding of up to `max|x_group| / 254` per element on
//! top of the weights' own. Measured by the `q8_activation_error` test in
//! `tests/props.rs` (256 x 384 q8_0 weights, random `x`, error of the dot product against
//! the f64 product with the dequantised weights, relative to `sum |w x|`): f32
//! activations 2.3e-8 (x86-64) / 1.9e-8 (FMA), q8_0 activations 9.8e-4, about 4e4 times
//! more. Decode at these model sizes is bound by weight bytes, which q8_0 weights already
//! cut 4x against f32, so keeping `x` in f32 costs little.
use crate::QK;
use half::f16;
use wide::f32x8;

/// out (rows) = dequant(q, scales) (rows, cols) · x (cols); `cols % QK == 0`.
pub fn matvec_q8(out: &mut [f32], q: &[i8], scales: &[f16], x: &[f32]) {
    let bytes: &[u8] = bytemuck::cast_slice(q);
    #[cfg(target_arch = "x86_64")]
    if crate::arch::x86_64::enabled() {
        // SAFETY: `enabled()` is true only when AVX2, FMA and F16C are available
        // (enabled at compile time, or detected on this CPU).
        return unsafe { avx2::matvec_q::<false, 2>(out, bytes, scales, x) };
    }
    #[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
    {
        // SAFETY: NEON is enabled at compile time (the `cfg` above).
        unsafe { neon::matvec_q::<false, 2>(out, bytes, scales, x) }
    }
    #[cfg(not(all(target_arch = "aarch64", target_feature = "neon")))]
    {
        portable::matvec_q::<false>(out, bytes, scales, x)
    }
}

/// Plain-loop reference, always compiled.
pub mod scalar {
    use crate::QK;
    use half::f16;
    /// Scalar `matvec_q8`.
    pub fn matvec_q8(out: &mut [f32], q: &[i8], scales: &[f16], x: &[f32]) {
        let cols = x.len();
        let groups = cols / QK;
        if groups == 0 {
            out.fill(0.0);
            return;
        }
        for ((o, row), srow) in out
            .iter_mut()
            .zip(q.chunks_exact(cols))
            .zip(scales.chunks_exact(groups))
        {
            let mut acc = 0.0f32;
            for ((qg, xg), s) in row.chunks_exact(QK).zip(x.chunks_exact(QK)).zip(srow) {
                let dot: f32 = qg.iter().zip(xg).map(|(&a, b)| a as f32 * b).sum();
                acc += dot * s.to_f32();
            }
            *o = acc;
        }
    }
}

/// Shared row bookkeeping of the q8_0 and q4_0 kernels: `(groups, row_bytes, rows)`;
/// `None` (after zeroing `out`) when `x` holds no full group. `Q4` packs two columns a
/// byte.
#[inline(always)]
pub(crate) fn quant_shape<const Q4: bool>(
    out: &mut [f32],
    q: &[u8],
    scales: &[f16],
    x: &[f32],
) -> Option<(usize, usize, usize)> {
    let cols = x.len();
    let groups = cols / QK;
    if groups == 0 {
        out.fill(0.0);
        return None;
    }
    let row_bytes = if Q4 { cols / 2 } else { cols };
    Some((
        groups,
        row_bytes,
        out.len()
            .min(q.len() / row_bytes)
            .min(scales.len() / groups),
    ))
}

/// 16-byte blocks of one row's quantised data: a q8_0 group is 2 blocks, q4_0 one.
#[inline(always)]
pub(crate) fn blocks(row: &[u8]) -> &[[u8; 16]] {
    row.as_chunks::<16>().0
}

/// One row's groups as units of `GB` 16-byte blocks (`GB` = 2 for q8_0, 1 for q4_0).
#[cfg(any(
    target_arch = "x86_64",
    all(target_arch = "aarch64", target_feature = "neon")
))]
#[inline(always)]
pub(crate) fn units<const GB: usize>(row: &[u8]) -> &[[[u8; 16]; GB]] {
    blocks(row).as_chunks::<GB>().0
}

/// Portable path (`wide`): one row at a time, each group widened into 32 f32 first.
/// (Unused on aarch64, where the NEON path always runs.)
#[allow(dead_code)]
pub(crate) mod portable {
    use super::*;

    pub fn matvec_q<const Q4: bool>(out: &mut [f32], q: &[u8], scales: &[f16], x: &[f32]) {
        let Some((groups, row_bytes, rows)) = quant_shape::<Q4>(out, q, scales, x) else {
            return;
        };
        let xg = x.as_chunks::<QK>().0;
        let per_group = if Q4 { 1 } else { 2 };
        for ((o, row), srow) in out[..rows]
            .iter_mut()
            .zip(q.chunks_exact(row_bytes))
            .zip(scales.chunks_exact(groups))
        {
            let b = blocks(row);
            let mut acc = f32x8::ZERO;
            for (g, (xv, s)) in xg.iter().zip(srow).enumerate() {
                let w = widen::<Q4>(
                    b.get(g * per_group..g * per_group + per_group)
                        .unwrap_or(&[]),
                );
                let xs = xv.as_chunks::<8>().0;
                let wsl = w.as_chunks::<8>().0;
                let mut dot = f32x8::ZERO;
                for (a, c) in wsl.iter().zip(xs) {
                    dot = f32x8::from(*a).mul_add(f32x8::from(*c), dot);
                }
                acc = dot.mul_add(f32x8::splat(s.to_f32()), acc);
            }
            *o = acc.reduce_add();
        }
    }

    /// One group's 32 weights as f32 (unscaled), in column order; plain indexed loops
    /// over fixed-size arrays, which LLVM vectorises (SSE2 unpack / shift).
    #[inline(always)]
    fn widen<const Q4: bool>(b: &[[u8; 16]]) -> [f32; QK] {
        let mut w = [0.0f32; QK];
        if Q4 {
            if let Some(b) = b.first() {
                for j in 0..QK / 2 {
                    w[2 * j] = ((b[j] & 0x0f) as i32 - 8) as f32;
                    w[2 * j + 1] = ((b[j] >> 4) as i32 - 8) as f32;
                }
            }
        } else if let [lo, hi] = b {
            for j in 0..QK / 2 {
                w[j] = lo[j] as i8 as f32;
                w[QK / 2 + j] = hi[j] as i8 as f32;
            }
        }
        w
    }
}

#[cfg(target_arch = "x86_64")]
pub(crate) mod avx2 {
    use super::*;
    use crate::arch::x86_64::{hsum, load_f32, load_i8x32, load_q4x32, splat_f16};
    use core::arch::x86_64::*;

    /// One group (`GB` 16-byte blocks) as 4 x 8 f32 (unscaled).
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn group<const Q4: bool, const GB: usize>(b: &[[u8; 16]; GB]) -> [__m256; 4] {
        match (b.first(), b.last()) {
            (Some(b), _) if Q4 => load_q4x32(b),
            (Some(lo), Some(hi)) => load_i8x32(lo, hi),
            _ => [_mm256_setzero_ps(); 4],
        }
    }

    /// `sum_k w[k] * x[k]` over one group, two FMA chains.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn gdot(w: [__m256; 4], x: &[__m256; 4]) -> __m256 {
        let a = _mm256_fmadd_ps(w[2], x[2], _mm256_mul_ps(w[0], x[0]));
        let b = _mm256_fmadd_ps(w[3], x[3], _mm256_mul_ps(w[1], x[1]));
        _mm256_add_ps(a, b)
    }

    /// # Safety
    /// The CPU must support AVX2, FMA and F16C.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn matvec_q<const Q4: bool, const GB: usize>(
        out: &mut [f32],
        q: &[u8],
        scales: &[f16],
        x: &[f32],
    ) {
        let Some((groups, row_bytes, rows)) = quant_shape::<Q4>(out, q, scales, x) else {
            return;
        };
        let xg = x.as_chunks::<QK>().0;
        let load_x = |xv: &[f32; QK]| {
            let c = xv.as_chunks::<8>().0;
            let mut v = [_mm256_setzero_ps(); 4];
            for (v, c) in v.iter_mut().zip(c) {
                *v = load_f32(c);
            }
            v
        };
        let (out, q, scales) = (
            &mut out[..rows],
            &q[..rows * row_bytes],
            &scales[..rows * groups],
        );
        let mut o4 = out.chunks_exact_mut(4);
        let mut q4 = q.chunks_exact(4 * row_bytes);
        let mut s4 = scales.chunks_exact(4 * groups);
        for ((o, qb), sb) in (&mut o4).zip(&mut q4).zip(&mut s4) {
            let rg: [&[[[u8; 16]; GB]]; 4] =
                core::array::from_fn(|k| units::<GB>(&qb[k * row_bytes..(k + 1) * row_bytes]));
            let rs: [&[f16]; 4] = core::array::from_fn(|k| &sb[k * groups..(k + 1) * groups]);
            let mut acc = [_mm256_setzero_ps(); 4];
            // Zipped iterators: no per-group bounds checks, each row's group widened and
            // consumed at once (keeps the 16 ymm registers from spilling).
            let it = xg
                .iter()
                .zip(rg[0].iter().zip(rs[0]))
                .zip(rg[1].iter().zip(rs[1]))
                .zip(rg[2].iter().zip(rs[2]))
                .zip(rg[3].iter().zip(rs[3]));
            for ((((xv, (g0, s0)), (g1, s1)), (g2, s2)), (g3, s3)) in it {
                let xv = load_x(xv);
                acc[0] = _mm256_fmadd_ps(gdot(group::<Q4, GB>(g0), &xv), splat_f16(*s0), acc[0]);
                acc[1] = _mm256_fmadd_ps(gdot(group::<Q4, GB>(g1), &xv), splat_f16(*s1), acc[1]);
                acc[2] = _mm256_fmadd_ps(gdot(group::<Q4, GB>(g2), &xv), splat_f16(*s2), acc[2]);
                acc[3] = _mm256_fmadd_ps(gdot(group::<Q4, GB>(g3), &xv), splat_f16(*s3), acc[3]);
            }
            for (o, a) in o.iter_mut().zip(acc) {
                *o = hsum(a);
            }
        }
        let rest = o4.into_remainder();
        for ((o, row), srow) in rest
            .iter_mut()
            .zip(q4.remainder().chunks_exact(row_bytes))
            .zip(s4.remainder().chunks_exact(groups))
        {
            let mut acc = _mm256_setzero_ps();
            for ((xv, g), s) in xg.iter().zip(units::<GB>(row)).zip(srow) {
                acc = _mm256_fmadd_ps(gdot(group::<Q4, GB>(g), &load_x(xv)), splat_f16(*s), acc);
            }
            *o = hsum(acc);
        }
    }
}

#[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
pub(crate) mod neon {
    use super::*;
    use crate::arch::aarch64::{f16_to_f32, load_f32, load_i8x32, load_q4x32, widen_i8x16};
    use core::arch::aarch64::*;

    /// One group of row `b` as 8 x 4 f32 (unscaled).
    #[inline]
    #[target_feature(enable = "neon")]
    fn group<const Q4: bool, const GB: usize>(b: &[[u8; 16]; GB]) -> [float32x4_t; 8] {
        let [lo, hi] = match (b.first(), b.last()) {
            (Some(b), _) if Q4 => load_q4x32(b),
            (Some(lo), Some(hi)) => load_i8x32(lo, hi),
            _ => [vdupq_n_s8(0); 2],
        };
        let [a, b, c, d] = widen_i8x16(lo);
        let [e, f, g, h] = widen_i8x16(hi);
        [a, b, c, d, e, f, g, h]
    }

    /// `sum_k w[k] * x[k]` over one group, two FMA chains.
    #[inline]
    #[target_feature(enable = "neon")]
    fn gdot(w: [float32x4_t; 8], x: &[float32x4_t; 8]) -> float32x4_t {
        let mut a = vmulq_f32(w[0], x[0]);
        let mut b = vmulq_f32(w[1], x[1]);
        for k in 1..4 {
            a = vfmaq_f32(a, w[2 * k], x[2 * k]);
            b = vfmaq_f32(b, w[2 * k + 1], x[2 * k + 1]);
        }
        vaddq_f32(a, b)
    }

    #[inline]
    #[target_feature(enable = "neon")]
    fn load_x(xv: &[f32; QK]) -> [float32x4_t; 8] {
        let c = xv.as_chunks::<4>().0;
        let mut v = [vdupq_n_f32(0.0); 8];
        for (v, c) in v.iter_mut().zip(c) {
            *v = load_f32(c);
        }
        v
    }

    #[target_feature(enable = "neon")]
    pub fn matvec_q<const Q4: bool, const GB: usize>(
        out: &mut [f32],
        q: &[u8],
        scales: &[f16],
        x: &[f32],
    ) {
        let Some((groups, row_bytes, rows)) = quant_shape::<Q4>(out, q, scales, x) else {
            return;
        };
        let xg = x.as_chunks::<QK>().0;
        let (out, q, scales) = (
            &mut out[..rows],
            &q[..rows * row_bytes],
            &scales[..rows * groups],
        );
        let mut o4 = out.chunks_exact_mut(4);
        let mut q4 = q.chunks_exact(4 * row_bytes);
        let mut s4 = scales.chunks_exact(4 * groups);
        for ((o, qb), sb) in (&mut o4).zip(&mut q4).zip(&mut s4) {
            let rg: [&[[[u8; 16]; GB]]; 4] =
                core::array::from_fn(|k| units::<GB>(&qb[k * row_bytes..(k + 1) * row_bytes]));
            let rs: [&[f16]; 4] = core::array::from_fn(|k| &sb[k * groups..(k + 1) * groups]);
            let mut acc = [vdupq_n_f32(0.0); 4];
            let it = xg
                .iter()
                .zip(rg[0].iter().zip(rs[0]))
                .zip(rg[1].iter().zip(rs[1]))
                .zip(rg[2].iter().zip(rs[2]))
                .zip(rg[3].iter().zip(rs[3]));
            for ((((xv, (g0, s0)), (g1, s1)), (g2, s2)), (g3, s3)) in it {
                let xv = load_x(xv);
                acc[0] = vfmaq_n_f32(acc[0], gdot(group::<Q4, GB>(g0), &xv), f16_to_f32(*s0));
                acc[1] = vfmaq_n_f32(acc[1], gdot(group::<Q4, GB>(g1), &xv), f16_to_f32(*s1));
                acc[2] = vfmaq_n_f32(acc[2], gdot(group::<Q4, GB>(g2), &xv), f16_to_f32(*s2));
                acc[3] = vfmaq_n_f32(acc[3], gdot(group::<Q4, GB>(g3), &xv), f16_to_f32(*s3));
            }
            for (o, a) in o.iter_mut().zip(acc) {
                *o = vaddvq_f32(a);
            }
        }
        let rest = o4.into_remainder();
        for ((o, row), srow) in rest
            .iter_mut()
            .zip(q4.remainder().chunks_exact(row_bytes))
            .zip(s4.remainder().chunks_exact(groups))
        {
            let mut acc = vdupq_n_f32(0.0);
            for ((xv, g), s) in xg.iter().zip(units::<GB>(row)).zip(srow) {
                acc = vfmaq_n_f32(acc, gdot(group::<Q4, GB>(g), &load_x(xv)), f16_to_f32(*s));
            }
            *o = vaddvq_f32(acc);
        }
    }
}
