//! q8_0 matvec. Weights: `q` i8 `[rows, cols]`, `scales` f16 `[rows, cols/QK]`;
//! `w[r, c] = q[r, c] * scales[r, c / QK]`.
//!
//! Activations are quantised to **i16** once per call, per group of [`QK`] columns:
//! `sx_g = max|x_g| / 32767` (f32), `xq[c] = round(x[c] / sx_g)` (via `x * (32767 /
//! max)`, ties away from zero, clamped to +-32767). Then
//! `out[r] = sum_g dot_g as f32 * (scales[r, g] as f32 * sx_g)` with
//! `dot_g = sum_{c in g} q[r, c] * xq[c]` computed exactly in i32 (32 * 128 * 32767 <
//! 2^31), the groups accumulated in column order by plain f32 `+=`. The integer sums are
//! exact in any order, and the float part is the same scalar code on every path, so the
//! scalar reference, AVX2 (`vpmovsxbw` + `vpmaddwd`), NEON (`sxtl` + `smlal`) and the
//! ARMv7E-M DSP path (`SXTB16` + `SMLAD`, inline `asm!`) are **bit-identical**: the
//! Cortex-M firmware computes exactly what the host does. A group whose `max|x|` is not
//! in `[2^-100, 2^100]` (zero, tiny, huge, inf, NaN) takes the f32 fallback
//! `(sum_c q[r, c] as f32 * x[c]) * scale` (shared scalar code, same on every path), so
//! inf/NaN propagate as in the plain formula.
//!
//! The activation scratch lives on the stack: `x` is quantised in chunks of [`CHUNK`]
//! columns (512 bytes of i16), `out[r]` carrying each row's running sum from chunk to
//! chunk, which keeps the float order of a single pass.
//!
//! Why i16 and not llama.cpp's q8_0 activations: measured by the `q8_activation_error`
//! test in `tests/props.rs` (256 x 384 q8_0 weights, random `x`, max error of the dot
//! product against the f64 product with the dequantised weights and the f32 `x`, relative
//! to `sum |w x|`): i16 activations 3.1e-6, q8_0 activations 9.8e-4 (f32 activations, the
//! previous design: 2.3e-8). The i16 error is the rounding of `x` (half a step of
//! `max|x_g| / 32767` per element), negligible against the weights' own q8_0 rounding
//! (the tests/ parity bound is 3e-2) and it buys exact integer dot products, so the
//! firmware's text equals the host's by construction, and speed: on the Cortex-M4 (QEMU,
//! 256 x 64, `--features profile` in runtime/firmware) 41,720 instructions (2.5 a
//! weight) for the DSP path against 261,439 for the old f32 `wide` path (host speed of
//! the AVX2/NEON integer paths not measured here: see benches/).
//!
//! Shapes: `cols = x.len()`, `groups = cols / QK` (a partial last group is ignored;
//! `groups == 0` gives zeros), `rows = min(out.len(), q.len() / cols, scales.len() /
//! groups)`, rows past that are left as they are.
use crate::QK;
use half::f16;
use wide::f32x8;

/// Columns quantised per pass (8 groups: 512 bytes of i16 on the stack).
pub const CHUNK: usize = 256;
const CG: usize = CHUNK / QK;

/// out (rows) = dequant(q, scales) (rows, cols) · x (cols); `cols % QK == 0`.
// Thumb: one out-of-line copy, not one inlined per call site (flash).
#[cfg_attr(target_arch = "arm", inline(never))]
pub fn matvec_q8(out: &mut [f32], q: &[i8], scales: &[f16], x: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    if crate::arch::x86_64::enabled() {
        // SAFETY: `enabled()` is true only when AVX2, FMA and F16C are available
        // (enabled at compile time, or detected on this CPU).
        return unsafe { avx2::matvec_q8(out, q, scales, x) };
    }
    #[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
    {
        // SAFETY: NEON is enabled at compile time (the `cfg` above).
        unsafe { neon::matvec_q8(out, q, scales, x) }
    }
    #[cfg(all(target_arch = "arm", folio_dsp))]
    {
        dsp::matvec_q8(out, q, scales, x)
    }
    #[cfg(not(any(
        all(target_arch = "aarch64", target_feature = "neon"),
        all(target_arch = "arm", folio_dsp)
    )))]
    {
        scalar::matvec_q8(out, q, scales, x)
    }
}

/// One chunk of `x` quantised to i16: up to [`CG`] groups.
#[repr(C, align(4))]
pub(crate) struct Xq {
    /// `(CHUNK)` i16 activations; with `PERM`, each 4 columns stored as `x0 x2 x1 x3`.
    pub q: [i16; CHUNK],
    /// `(CG)` per-group scale `sx_g`, or NaN for a group that takes the f32 fallback.
    pub s: [f32; CG],
}

/// f16 -> f32, exact: on the Cortex-M4F one `VCVTB.F32.F16` (FPv4-SP has the
/// half-precision conversions), elsewhere bit arithmetic for normal values and `half` for
/// the rest.
#[inline(always)]
#[cfg(all(target_arch = "arm", folio_dsp, target_abi = "eabihf"))]
pub(crate) fn h2f(h: f16) -> f32 {
    let out: u32;
    // SAFETY: register-only FPU conversion on a hard-float ARMv7E-M target.
    unsafe {
        core::arch::asm!(
            "vmov s0, {r}",
            "vcvtb.f32.f16 s0, s0",
            "vmov {o}, s0",
            r = in(reg) u32::from(h.to_bits()),
            o = lateout(reg) out,
            out("s0") _,
            options(pure, nomem, nostack),
        );
    }
    f32::from_bits(out)
}

/// f16 -> f32: bit arithmetic for normal values (exact), `half` for the rest.
#[inline(always)]
#[cfg(not(all(target_arch = "arm", folio_dsp, target_abi = "eabihf")))]
pub(crate) fn h2f(h: f16) -> f32 {
    let b = u32::from(h.to_bits());
    let e = b & 0x7c00;
    if e != 0 && e != 0x7c00 {
        f32::from_bits(((b & 0x8000) << 16) | (((b & 0x7fff) << 13) + 0x3800_0000))
    } else {
        h.to_f32()
    }
}

/// Quantises the groups `xc` (at most [`CG`]) into `xq`. `PERM` stores every 4 columns
/// as `x0 x2 x1 x3` (the DSP path's `SXTB16` pairing); the values are the same.
#[inline(always)]
pub(crate) fn quantize<const PERM: bool>(xq: &mut Xq, xc: &[[f32; QK]]) {
    for ((g, qg), s) in xc
        .iter()
        .zip(xq.q.as_chunks_mut::<QK>().0)
        .zip(xq.s.iter_mut())
    {
        let amax = g.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        // [2^-100, 2^100]; NaN is outside too.
        if !(7.888_609e-31..=1.267_650_6e30).contains(&amax) {
            *s = f32::NAN;
            qg.fill(0);
            continue;
        }
        *s = amax / 32767.0;
        let inv = 32767.0 / amax;
        for (k, &v) in g.iter().enumerate() {
            let r = v * inv;
            let r = if r >= 0.0 { r + 0.5 } else { r - 0.5 };
            let v = (r as i32).clamp(-32767, 32767) as i16;
            let k = if PERM {
                // 4j+0 -> 4j+0, 4j+1 -> 4j+2, 4j+2 -> 4j+1, 4j+3 -> 4j+3.
                (k & !3) | ((k & 1) << 1) | ((k >> 1) & 1)
            } else {
                k
            };
            if let Some(d) = qg.get_mut(k) {
                *d = v;
            }
        }
    }
}

/// The driver every path shares: quantises `x` chunk by chunk and, per row and group,
/// adds `dot(q_group, xq_group) as f32 * (scale * sx)` (or the f32 fallback) to the
/// row's running sum. Only `dot` differs between paths; `fast` may take a chunk first
/// (returning true when it did it), as the DSP path does for 2 rows at a time.
#[inline(always)]
pub(crate) fn drive<const PERM: bool>(
    out: &mut [f32],
    q: &[i8],
    scales: &[f16],
    x: &[f32],
    dot: impl Fn(&[i8; QK], &[i16; QK]) -> i32,
    mut fast: impl FnMut(&mut [f32], &Chunk<'_>) -> bool,
) {
    let cols = x.len();
    let groups = cols / QK;
    if groups == 0 {
        out.fill(0.0);
        return;
    }
    let rows = out.len().min(q.len() / cols).min(scales.len() / groups);
    let out = &mut out[..rows];
    let xg = x.as_chunks::<QK>().0;
    let mut xq = Xq {
        q: [0; CHUNK],
        s: [0.0; CG],
    };
    for (ci, xc) in xg.chunks(CG).enumerate() {
        quantize::<PERM>(&mut xq, xc);
        let c = Chunk {
            q,
            scales,
            cols,
            groups,
            g0: ci * CG,
            xq: &xq,
            xc,
        };
        if !fast(out, &c) {
            c.rows(out, &dot);
        }
    }
}

/// One chunk of columns, quantised, with the matrix it applies to.
pub(crate) struct Chunk<'a> {
    pub q: &'a [i8],
    pub scales: &'a [f16],
    pub cols: usize,
    pub groups: usize,
    /// First group of the chunk.
    pub g0: usize,
    pub xq: &'a Xq,
    /// `(n, QK)` the chunk's f32 activations (`n <= CG`).
    pub xc: &'a [[f32; QK]],
}

impl Chunk<'_> {
    /// Adds the chunk's groups to `out[r]` (set, for the first chunk) for every row.
    #[inline(always)]
    pub(crate) fn rows(&self, out: &mut [f32], dot: &impl Fn(&[i8; QK], &[i16; QK]) -> i32) {
        let qx = self.xq.q.as_chunks::<QK>().0;
        for ((o, row), srow) in out
            .iter_mut()
            .zip(self.q.chunks_exact(self.cols))
            .zip(self.scales.chunks_exact(self.groups))
        {
            let mut acc = if self.g0 == 0 { 0.0f32 } else { *o };
            let wg = row.get(self.g0 * QK..).unwrap_or(&[]).as_chunks::<QK>().0;
            let sg = srow.get(self.g0..).unwrap_or(&[]);
            for ((((w, xi), sx), s), xf) in wg.iter().zip(qx).zip(&self.xq.s).zip(sg).zip(self.xc) {
                let sw = h2f(*s);
                if sx.is_nan() {
                    let d: f32 = w.iter().zip(xf).map(|(&a, b)| a as f32 * b).sum();
                    acc += d * sw;
                } else {
                    acc += dot(w, xi) as f32 * (sw * sx);
                }
            }
            *o = acc;
        }
    }
}

/// Plain-loop reference, always compiled.
pub mod scalar {
    use crate::QK;
    use half::f16;
    /// Scalar `matvec_q8` (the i16-activation scheme of the module header).
    pub fn matvec_q8(out: &mut [f32], q: &[i8], scales: &[f16], x: &[f32]) {
        super::drive::<false>(out, q, scales, x, dot, |_, _| false);
    }

    /// `sum_k w[k] * x[k]`, exact in i32.
    #[inline(always)]
    pub(crate) fn dot(w: &[i8; QK], x: &[i16; QK]) -> i32 {
        w.iter()
            .zip(x)
            .fold(0i32, |a, (&w, &x)| a + i32::from(w) * i32::from(x))
    }
}

/// ARMv7E-M DSP path: each word of 4 weights is split by `SXTB16` into the sign-extended
/// pairs (w0, w2) and (w1, w3), multiplied against the `PERM` activation pairs
/// (x0, x2), (x1, x3) by `SMLAD` (two 16x16 products and an add a cycle).
#[cfg(all(target_arch = "arm", folio_dsp))]
pub(crate) mod dsp {
    use crate::QK;
    use half::f16;

    /// DSP `matvec_q8`, bit-identical to [`scalar::matvec_q8`](super::scalar::matvec_q8):
    /// rows in pairs (each activation word loaded once for both), each row's float sum
    /// in the reference's order; a chunk with an f32-fallback group, and an odd last
    /// row, go through the shared row loop.
    pub fn matvec_q8(out: &mut [f32], q: &[i8], scales: &[f16], x: &[f32]) {
        super::drive::<true>(out, q, scales, x, dot, pairs);
    }

    /// The pair loop over one chunk; false (nothing done) when a group is f32-fallback.
    #[inline(always)]
    fn pairs(out: &mut [f32], c: &super::Chunk<'_>) -> bool {
        let n = c.xc.len();
        let sx = c.xq.s.get(..n).unwrap_or(&[]);
        if sx.iter().any(|s| s.is_nan()) {
            return false;
        }
        let qx = c.xq.q.as_chunks::<QK>().0;
        let mut o2 = out.chunks_exact_mut(2);
        let mut q2 = c.q.chunks_exact(2 * c.cols);
        let mut s2 = c.scales.chunks_exact(2 * c.groups);
        for ((o, qr), sr) in (&mut o2).zip(&mut q2).zip(&mut s2) {
            let (ra, rb) = qr.split_at(c.cols);
            let (sa, sb) = sr.split_at(c.groups);
            // (Never short: `g0 < groups`; empty, as in the shared loop, if it were.)
            let (ra, rb) = (
                ra.get(c.g0 * QK..).unwrap_or(&[]),
                rb.get(c.g0 * QK..).unwrap_or(&[]),
            );
            let (sa, sb) = (sa.get(c.g0..).unwrap_or(&[]), sb.get(c.g0..).unwrap_or(&[]));
            let (mut acc_a, mut acc_b) = if c.g0 == 0 {
                (0.0f32, 0.0f32)
            } else {
                (o[0], o[1])
            };
            let it = ra
                .as_chunks::<QK>()
                .0
                .iter()
                .zip(rb.as_chunks::<QK>().0)
                .zip(sa.iter().zip(sb))
                .zip(qx.iter().zip(sx));
            for (((wa, wb), (ha, hb)), (xi, s)) in it {
                let (da, db) = dot2(wa, wb, xi);
                acc_a += da as f32 * (super::h2f(*ha) * s);
                acc_b += db as f32 * (super::h2f(*hb) * s);
            }
            o[0] = acc_a;
            o[1] = acc_b;
        }
        let rest = o2.into_remainder();
        if !rest.is_empty() {
            let tail = super::Chunk {
                q: q2.remainder(),
                scales: s2.remainder(),
                ..*c
            };
            tail.rows(rest, &dot);
        }
        true
    }

    /// Two rows' group dot products against one activation group: one `asm!` block, so
    /// the activation words stay in two registers (`LDRD`) and feed both rows (11
    /// instructions per 4 columns of 2 rows).
    #[inline(always)]
    fn dot2(wa: &[i8; QK], wb: &[i8; QK], x: &[i16; QK]) -> (i32, i32) {
        let (mut pa, mut pb, mut px) = (wa.as_ptr(), wb.as_ptr(), x.as_ptr());
        let (mut a, mut b) = (0i32, 0i32);
        macro_rules! step {
            () => {
                "ldrd {x0}, {x1}, [{px}], #8\n\
                 ldr {w}, [{pa}], #4\n\
                 sxtb16 {t}, {w}\n\
                 smlad {a}, {t}, {x0}, {a}\n\
                 sxtb16 {t}, {w}, ror #8\n\
                 smlad {a}, {t}, {x1}, {a}\n\
                 ldr {w}, [{pb}], #4\n\
                 sxtb16 {t}, {w}\n\
                 smlad {b}, {t}, {x0}, {b}\n\
                 sxtb16 {t}, {w}, ror #8\n\
                 smlad {b}, {t}, {x1}, {b}\n"
            };
        }
        // SAFETY: reads exactly the 32 bytes of `wa` and of `wb` (word loads, any
        // alignment on ARMv7-M) and the 64 bytes of `x` (`LDRD`: `Xq` is 4-byte aligned
        // and a group is 64 bytes); registers only otherwise (ARMv7E-M DSP).
        unsafe {
            core::arch::asm!(
                step!(), step!(), step!(), step!(), step!(), step!(), step!(), step!(),
                pa = inout(reg) pa,
                pb = inout(reg) pb,
                px = inout(reg) px,
                a = inout(reg) a,
                b = inout(reg) b,
                x0 = out(reg) _,
                x1 = out(reg) _,
                w = out(reg) _,
                t = out(reg) _,
                options(pure, readonly, nostack),
            );
        }
        let _ = (pa, pb, px);
        (a, b)
    }

    #[inline(always)]
    fn dot(w: &[i8; QK], x: &[i16; QK]) -> i32 {
        // SAFETY: both arrays are 32 bytes / 64 bytes long; ARMv7-M loads words from any
        // address (`read_unaligned`).
        let (w, x) = unsafe {
            (
                core::ptr::read_unaligned(w.as_ptr().cast::<[u32; 8]>()),
                core::ptr::read_unaligned(x.as_ptr().cast::<[u32; 16]>()),
            )
        };
        let mut acc = 0;
        // Unrolled by hand: opt-level "s" keeps an 8-trip loop rolled.
        acc = dot4(w[0], x[0], x[1], acc);
        acc = dot4(w[1], x[2], x[3], acc);
        acc = dot4(w[2], x[4], x[5], acc);
        acc = dot4(w[3], x[6], x[7], acc);
        acc = dot4(w[4], x[8], x[9], acc);
        acc = dot4(w[5], x[10], x[11], acc);
        acc = dot4(w[6], x[12], x[13], acc);
        acc = dot4(w[7], x[14], x[15], acc);
        acc
    }

    /// `acc + w0*x0 + w1*x1 + w2*x2 + w3*x3` for the 4 i8 weights of `w` and the i16
    /// pairs `x02 = (x0, x2)`, `x13 = (x1, x3)`: `SXTB16` twice, `SMLAD` twice.
    #[inline(always)]
    fn dot4(w: u32, x02: u32, x13: u32, acc: i32) -> i32 {
        let mut acc = acc;
        // SAFETY: register-only DSP arithmetic (ARMv7E-M, `cfg(folio_dsp)`, set by build.rs).
        unsafe {
            core::arch::asm!(
                "sxtb16 {a}, {w}",
                "sxtb16 {b}, {w}, ror #8",
                "smlad {acc}, {a}, {x0}, {acc}",
                "smlad {acc}, {b}, {x1}, {acc}",
                w = in(reg) w,
                x0 = in(reg) x02,
                x1 = in(reg) x13,
                a = out(reg) _,
                b = out(reg) _,
                acc = inout(reg) acc,
                options(pure, nomem, nostack),
            );
        }
        acc
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

    /// AVX2 `matvec_q8`, bit-identical to the scalar reference: each group's 32 weights
    /// sign-extended to i16 (`vpmovsxbw`), multiplied and pair-summed with the i16
    /// activations (`vpmaddwd`), the 8 i32 lanes summed exactly.
    ///
    /// # Safety
    /// The CPU must support AVX2, FMA and F16C.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn matvec_q8(out: &mut [f32], q: &[i8], scales: &[f16], x: &[f32]) {
        drive::<false>(
            out,
            q,
            scales,
            x,
            |w, xi| {
                // SAFETY: 32 readable bytes in `w`, 64 in `xi` (unaligned loads).
                unsafe {
                    let wv = _mm256_loadu_si256(w.as_ptr().cast());
                    let lo = _mm256_cvtepi8_epi16(_mm256_castsi256_si128(wv));
                    let hi = _mm256_cvtepi8_epi16(_mm256_extracti128_si256::<1>(wv));
                    let x0 = _mm256_loadu_si256(xi.as_ptr().cast());
                    let x1 = _mm256_loadu_si256(xi.as_ptr().add(16).cast());
                    let s = _mm256_add_epi32(_mm256_madd_epi16(lo, x0), _mm256_madd_epi16(hi, x1));
                    let s =
                        _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256::<1>(s));
                    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b01_00_11_10>(s));
                    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b10_11_00_01>(s));
                    _mm_cvtsi128_si32(s)
                }
            },
            |_, _| false,
        )
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

    /// NEON `matvec_q8`, bit-identical to the scalar reference: weights sign-extended to
    /// i16 (`sxtl`), multiplied and accumulated into i32 lanes (`smlal`), summed exactly
    /// (`addv`).
    #[target_feature(enable = "neon")]
    pub fn matvec_q8(out: &mut [f32], q: &[i8], scales: &[f16], x: &[f32]) {
        drive::<false>(
            out,
            q,
            scales,
            x,
            |w, xi| {
                // SAFETY: 32 readable bytes in `w`, 64 in `xi`.
                unsafe {
                    let w0 = vld1q_s8(w.as_ptr());
                    let w1 = vld1q_s8(w.as_ptr().add(16));
                    let p = xi.as_ptr();
                    let a = vmovl_s8(vget_low_s8(w0));
                    let b = vmovl_high_s8(w0);
                    let c = vmovl_s8(vget_low_s8(w1));
                    let d = vmovl_high_s8(w1);
                    let (xa, xb, xc, xd) = (
                        vld1q_s16(p),
                        vld1q_s16(p.add(8)),
                        vld1q_s16(p.add(16)),
                        vld1q_s16(p.add(24)),
                    );
                    let mut s = vmull_s16(vget_low_s16(a), vget_low_s16(xa));
                    s = vmlal_high_s16(s, a, xa);
                    s = vmlal_s16(s, vget_low_s16(b), vget_low_s16(xb));
                    s = vmlal_high_s16(s, b, xb);
                    let mut t = vmull_s16(vget_low_s16(c), vget_low_s16(xc));
                    t = vmlal_high_s16(t, c, xc);
                    t = vmlal_s16(t, vget_low_s16(d), vget_low_s16(xd));
                    t = vmlal_high_s16(t, d, xd);
                    vaddvq_s32(vaddq_s32(s, t))
                }
            },
            |_, _| false,
        )
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
