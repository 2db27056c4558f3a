//! aarch64 NEON primitives: f16 widening (`fcvtl`, baseline ARMv8.0: Pi 4 and up), loads,
//! and the row driver of the integer-dot matvecs. NEON is part of the aarch64 baseline, so the NEON
//! kernels are selected at compile time with `cfg(target_feature = "neon")`; they and
//! these helpers are `#[target_feature(enable = "neon")]` functions, so the one `unsafe`
//! a kernel needs is at its call site in the op's public function.
//!
//! The integer-dot matvecs use `smull`/`smlal2`/`sadalp` on the Cortex-A72 baseline and
//! `sdot` (inline `asm!`: `vdotq_s32` is unstable) where `dotprod` is enabled at compile
//! time; [`quad`] reduces group sums exactly and [`rows4`] drives
//! their row value (the order is defined in [`crate::quantize_act`]).
use crate::quantize_act::rows::{activations, first, groups8, split4, used};
use crate::quantize_act::Shape;
use core::arch::aarch64::*;
use half::f16;

/// 4 f32 from an array.
#[inline]
#[target_feature(enable = "neon")]
pub fn load_f32(a: &[f32; 4]) -> float32x4_t {
    // SAFETY: `a` is 16 readable bytes; `ld1` has no alignment requirement.
    unsafe { vld1q_f32(a.as_ptr()) }
}

/// Store 4 f32 into an array.
#[inline]
#[target_feature(enable = "neon")]
pub fn store_f32(a: &mut [f32; 4], v: float32x4_t) {
    // SAFETY: `a` is 16 writable bytes; `st1` has no alignment requirement.
    unsafe { vst1q_f32(a.as_mut_ptr(), v) }
}

/// 4 f16 widened to 4 f32 (`fcvtl`, exact).
#[inline]
#[target_feature(enable = "neon")]
pub fn load_f16(a: &[f16; 4]) -> float32x4_t {
    // SAFETY: `a` is 8 readable bytes (f16 is a `repr(transparent)` u16).
    let h = unsafe { vld1_u16(a.as_ptr().cast::<u16>()) };
    vcvt_f32_f16(vreinterpret_f16_u16(h))
}

/// 4 f32 rounded (to nearest even, the FPCR default) to 4 f16 (`fcvtn`).
#[inline]
#[target_feature(enable = "neon")]
pub fn store_f16(a: &mut [f16; 4], v: float32x4_t) {
    let h = vreinterpret_u16_f16(vcvt_f16_f32(v));
    // SAFETY: `a` is 8 writable bytes; `st1` has no alignment requirement.
    unsafe { vst1_u16(a.as_mut_ptr().cast::<u16>(), h) }
}

/// One f16 widened to f32 (`fcvtl`; `half` would convert in software here).
#[inline]
#[target_feature(enable = "neon")]
pub fn f16_to_f32(h: f16) -> f32 {
    vgetq_lane_f32::<0>(vcvt_f32_f16(vreinterpret_f16_u16(vdup_n_u16(h.to_bits()))))
}

/// 32 i8 in two registers.
#[inline]
#[target_feature(enable = "neon")]
pub fn load_i8x16x2(a: &[i8; 32]) -> [int8x16_t; 2] {
    // SAFETY: `a` is 32 readable bytes; unaligned loads.
    unsafe { [vld1q_s8(a.as_ptr()), vld1q_s8(a.as_ptr().add(16))] }
}

/// 16 u8 in one register.
#[inline]
#[target_feature(enable = "neon")]
pub fn load_u8x16(a: &[u8; 16]) -> uint8x16_t {
    // SAFETY: `a` is 16 readable bytes; unaligned load.
    unsafe { vld1q_u8(a.as_ptr()) }
}

/// 4 i32 partial sums of `w . x` over 32 i8 pairs by two `sdot` (ARMv8.2 dot product;
/// `vdotq_s32` is not stable in Rust, hence `asm!`).
#[cfg(target_feature = "dotprod")]
#[inline]
#[target_feature(enable = "neon")]
pub fn sdot2(w: [int8x16_t; 2], x: [int8x16_t; 2]) -> int32x4_t {
    let mut acc = vdupq_n_s32(0);
    // SAFETY: register-only arithmetic; `dotprod` is enabled at compile time (the `cfg`).
    unsafe {
        core::arch::asm!(
            "sdot {a:v}.4s, {w0:v}.16b, {x0:v}.16b",
            "sdot {a:v}.4s, {w1:v}.16b, {x1:v}.16b",
            a = inout(vreg) acc,
            w0 = in(vreg) w[0],
            x0 = in(vreg) x[0],
            w1 = in(vreg) w[1],
            x1 = in(vreg) x[1],
            options(pure, nomem, nostack),
        );
    }
    acc
}

/// Exact group sums of 4 groups for 4 rows: `d[j][k]` holds 4 i32 partial sums of group
/// `j` of row `k`; lane `j` of the result's row `k` is group `j`'s total (`addp` tree).
#[inline]
#[target_feature(enable = "neon")]
pub fn quad(d: [[int32x4_t; 4]; 4]) -> [int32x4_t; 4] {
    let mut s = [vdupq_n_s32(0); 4];
    for k in 0..4 {
        s[k] = vpaddq_s32(vpaddq_s32(d[0][k], d[1][k]), vpaddq_s32(d[2][k], d[3][k]));
    }
    s
}

/// Up to 8 f16 widened to f32 in two halves, zero past `s.len()` (4 at a time packed in
/// a `u64`: no variable-length copy).
#[inline]
#[target_feature(enable = "neon")]
pub fn load_f16_tail(s: &[f16]) -> [float32x4_t; 2] {
    let pack = |s: &[f16]| {
        s.iter()
            .take(4)
            .enumerate()
            .fold(0u64, |a, (i, h)| a | u64::from(h.to_bits()) << (16 * i))
    };
    let (lo, hi) = match s.split_first_chunk::<4>() {
        Some((lo, hi)) => (pack(lo), pack(hi)),
        None => (pack(s), 0),
    };
    let h = |b: u64| vcvt_f32_f16(vreinterpret_f16_u64(vcreate_u64(b)));
    [h(lo), h(hi)]
}

/// Up to 8 f32 in two halves, zero past `s.len()`.
#[inline]
#[target_feature(enable = "neon")]
pub fn load_f32_tail(s: &[f32]) -> [float32x4_t; 2] {
    let mut p = [0.0f32; 8];
    for (p, v) in p.iter_mut().zip(s) {
        *p = *v;
    }
    load_f32x8(&p)
}

/// 8 f16 widened to f32 in two halves.
#[inline]
#[target_feature(enable = "neon")]
pub fn load_f16x8(a: &[f16; 8]) -> [float32x4_t; 2] {
    in_halves(a, |h| load_f16(h))
}

/// 8 f32 in two halves.
#[inline]
#[target_feature(enable = "neon")]
pub fn load_f32x8(a: &[f32; 8]) -> [float32x4_t; 2] {
    in_halves(a, |h| load_f32(h))
}

/// `load` of each half of `a`.
#[inline]
#[target_feature(enable = "neon")]
fn in_halves<T>(a: &[T; 8], load: impl Fn(&[T; 4]) -> float32x4_t) -> [float32x4_t; 2] {
    let (lo, hi) = a.split_at(4);
    match (lo.first_chunk::<4>(), hi.first_chunk::<4>()) {
        (Some(lo), Some(hi)) => [load(lo), load(hi)],
        _ => [vdupq_n_f32(0.0); 2],
    }
}

/// One block of the row value: groups `j` and `j + 4` in lane `j` of the two halves;
/// `acc + f32(isum) * (f32(scales) * xs)`, two roundings, never fused.
#[inline]
#[target_feature(enable = "neon")]
fn fold8(
    acc: [float32x4_t; 2],
    isum: [int32x4_t; 2],
    scales: [float32x4_t; 2],
    xs: [float32x4_t; 2],
) -> [float32x4_t; 2] {
    let mut out = acc;
    for h in 0..2 {
        let t = vmulq_f32(scales[h], xs[h]);
        out[h] = vaddq_f32(acc[h], vmulq_f32(vcvtq_f32_s32(isum[h]), t));
    }
    out
}

/// `((a0 + a4) + (a2 + a6)) + ((a1 + a5) + (a3 + a7))` of the two 4-lane accumulators
/// (lanes 0-3 and 4-7): the final reduction of the row value.
#[inline]
#[target_feature(enable = "neon")]
pub fn hsum8(acc: [float32x4_t; 2]) -> f32 {
    let s = vaddq_f32(acc[0], acc[1]);
    let u = vaddq_f32(s, vextq_f32::<2>(s, s));
    vgetq_lane_f32::<0>(u) + vgetq_lane_f32::<1>(u)
}

/// The integer-dot matvecs' driver, as `arch::x86_64::rows4`: rows in fours, each over
/// blocks of 8 groups; the row value follows the order of [`crate::quantize_act`], two
/// 4-lane accumulators a row (groups `j` and `j + 4` of each block in lane `j`) ended by
/// [`hsum8`]. `q` holds the rows' codes (groups of `B` elements), `scales` their weight
/// scales, `xq`, `xs` the activations, with the shapes of [`crate::quantize_act`].
/// `full` gives the exact group sums of 4 rows over 8
/// groups (lane `j` of half `h` = group `4h + j`), `half` over 4 groups and `part` over
/// 1 to 3 (lane `j` = group `j`, zero past them). The last block of a row, when shorter
/// than 8 groups, is `half` on its first 4 groups (if it has 4) and `part` on the rest.
/// A last pass of 1 to 3 rows repeats its last row.
#[inline]
#[target_feature(enable = "neon")]
#[allow(clippy::too_many_arguments)]
fn rows4<T, const B: usize>(
    out: &mut [f32],
    q: &[T],
    scales: &[f16],
    xq: &[i8],
    xs: &[f32],
    mut full: impl FnMut([&[[T; B]; 8]; 4], &[[i8; 32]; 8]) -> [[int32x4_t; 2]; 4],
    mut half: impl FnMut([&[[T; B]; 4]; 4], &[[i8; 32]; 4]) -> [int32x4_t; 4],
    mut part: impl FnMut([&[[T; B]]; 4], &[[i8; 32]]) -> [int32x4_t; 4],
) {
    // Codes a group (32 columns) per stored element of `q`: B of them.
    let Some(sh) = Shape::new(out, q.len(), scales.len(), xq.len(), xs.len(), 32 / B) else {
        return;
    };
    let (xg, xs) = activations(&sh, xq, xs);
    let (row_len, row_scales) = (sh.row_bytes, sh.row_scales);
    let out = out.get_mut(..sh.rows).unwrap_or(&mut []);
    let groups = xg.len();
    let (xb, xt) = xg.as_chunks::<8>();
    let (sb, st) = xs.as_chunks::<8>();
    let (x4, xr) = match xt.split_first_chunk::<4>() {
        Some((x4, xr)) => (Some(x4), xr),
        None => (None, xt),
    };
    let xs_tail = load_f32_tail(st);
    let mut pass = |o: &mut [f32], w: [&[T]; 4], d: [&[f16]; 4]| {
        let g = groups;
        let w = [used(w[0], g), used(w[1], g), used(w[2], g), used(w[3], g)];
        let d = [
            first(d[0], g),
            first(d[1], g),
            first(d[2], g),
            first(d[3], g),
        ];
        let mut acc = [[vdupq_n_f32(0.0); 2]; 4];
        let blocks = xb
            .iter()
            .zip(sb)
            .zip(groups8(w[0]).iter().zip(groups8(d[0])))
            .zip(groups8(w[1]).iter().zip(groups8(d[1])))
            .zip(groups8(w[2]).iter().zip(groups8(d[2])))
            .zip(groups8(w[3]).iter().zip(groups8(d[3])));
        for (((((x, s), (w0, d0)), (w1, d1)), (w2, d2)), (w3, d3)) in blocks {
            let isum = full([w0, w1, w2, w3], x);
            let xv = load_f32x8(s);
            acc[0] = fold8(acc[0], isum[0], load_f16x8(d0), xv);
            acc[1] = fold8(acc[1], isum[1], load_f16x8(d1), xv);
            acc[2] = fold8(acc[2], isum[2], load_f16x8(d2), xv);
            acc[3] = fold8(acc[3], isum[3], load_f16x8(d3), xv);
        }
        if !xt.is_empty() {
            let n0 = 8 * xb.len();
            let tail = |k: usize| w[k].get(n0..).unwrap_or(&[]);
            let tw = [tail(0), tail(1), tail(2), tail(3)];
            let first4 = |k: usize| tw[k].first_chunk::<4>();
            let mut isum = [[vdupq_n_s32(0); 2]; 4];
            let mut rest = 0;
            if let (Some(x4), Some(a), Some(b), Some(c), Some(e)) =
                (x4, first4(0), first4(1), first4(2), first4(3))
            {
                let lo = half([a, b, c, e], x4);
                for k in 0..4 {
                    isum[k][0] = lo[k];
                }
                rest = 4;
            }
            if !xr.is_empty() {
                let more = |k: usize| tw[k].get(rest..).unwrap_or(&[]);
                let r = part([more(0), more(1), more(2), more(3)], xr);
                for k in 0..4 {
                    isum[k][rest / 4] = r[k];
                }
            }
            for k in 0..4 {
                let dk = load_f16_tail(d[k].get(n0..).unwrap_or(&[]));
                acc[k] = fold8(acc[k], isum[k], dk, xs_tail);
            }
        }
        for (o, a) in o.iter_mut().zip(acc) {
            *o = hsum8(a);
        }
    };
    let mut o4 = out.chunks_exact_mut(4);
    let mut q4 = q.chunks_exact(4 * row_len);
    let mut s4 = scales.chunks_exact(4 * row_scales);
    for ((o, w), d) in (&mut o4).zip(&mut q4).zip(&mut s4) {
        pass(o, split4(w, row_len), split4(d, row_scales));
    }
    let o = o4.into_remainder();
    if !o.is_empty() {
        pass(
            o,
            split4(q4.remainder(), row_len),
            split4(s4.remainder(), row_scales),
        );
    }
}

/// Group sums of 4 rows over up to 4 groups (`x.len()`; lane `j` = group `j`, zero past
/// them), `dot` giving one group's 4 partial sums.
#[inline]
#[target_feature(enable = "neon")]
fn sums4<T, const B: usize>(
    w: [&[[T; B]]; 4],
    x: &[[i8; 32]],
    dot: &impl Fn(&[T; B], [int8x16_t; 2]) -> int32x4_t,
) -> [int32x4_t; 4] {
    let mut d = [[vdupq_n_s32(0); 4]; 4];
    for (dj, (j, x)) in d.iter_mut().zip(x.iter().take(4).enumerate()) {
        let xv = load_i8x16x2(x);
        for (d, w) in dj.iter_mut().zip(w) {
            if let Some(w) = w.get(j) {
                *d = dot(w, xv);
            }
        }
    }
    quad(d)
}

/// The integer-dot matvec `out = q . x` (see `rows4`) for groups that reduce by `dot` (one group's 4 partial sums of
/// codes `[T; B]` against 32 activation codes).
#[inline]
#[target_feature(enable = "neon")]
#[allow(clippy::too_many_arguments)]
pub fn rows4_dot<T, const B: usize>(
    out: &mut [f32],
    q: &[T],
    scales: &[f16],
    xq: &[i8],
    xs: &[f32],
    dot: impl Fn(&[T; B], [int8x16_t; 2]) -> int32x4_t,
) {
    rows4(
        out,
        q,
        scales,
        xq,
        xs,
        |w: [&[[T; B]; 8]; 4], x: &[[i8; 32]; 8]| {
            // The hot loop: written out (not through `sums4`) so that it inlines.
            let mut d = [[[vdupq_n_s32(0); 4]; 4]; 2];
            for (j, x) in x.iter().enumerate() {
                let xv = load_i8x16x2(x);
                for k in 0..4 {
                    d[j / 4][j % 4][k] = dot(&w[k][j], xv);
                }
            }
            let (lo, hi) = (quad(d[0]), quad(d[1]));
            [
                [lo[0], hi[0]],
                [lo[1], hi[1]],
                [lo[2], hi[2]],
                [lo[3], hi[3]],
            ]
        },
        |w: [&[[T; B]; 4]; 4], x: &[[i8; 32]; 4]| {
            sums4([&w[0][..], &w[1][..], &w[2][..], &w[3][..]], x, &dot)
        },
        |w, x| sums4(w, x, &dot),
    );
}

/// `s` as blocks of 2 x 4 elements (8 columns a step); the tail is left out.
#[inline(always)]
pub fn blocks8<T>(s: &[T]) -> &[[[T; 4]; 2]] {
    s.as_chunks::<4>().0.as_chunks::<2>().0
}
