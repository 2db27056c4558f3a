//! The one definition of folio's q8_0 and q4_0 groups, used by the exporter and fixtures.
//!
//! A row of `cols` values (a multiple of [`QK`]) is cut into groups of 32 consecutive
//! columns, each with one f16 scale `d`:
//! - q8_0: `d = max|x| / 127`, `q = round(x / d)` in `-127..=127`; `x ≈ q * d`.
//! - q4_0 (as llama.cpp): `m` = the value of largest magnitude (with its sign), `d = m / -8`,
//!   `q = clamp(round(x / d) + 8, 0, 15)`; `x ≈ (q - 8) * d`. A group's 32 codes in 16
//!   bytes, as llama.cpp's Q4_0: byte `j` holds column `j` in the low nibble and column
//!   `j + 16` in the high nibble.
//!
//! The scale is rounded to f16 before the values are divided by it, so the stored scale
//! is the one the codes were made with.
use crate::QK;
use half::f16;

/// Quantise one row to q8_0: `q` (cols), `scales` (cols / QK).
pub fn quantize_row_q8(q: &mut [i8], scales: &mut [f16], x: &[f32]) {
    for ((qg, sg), xg) in q
        .chunks_exact_mut(QK)
        .zip(scales.iter_mut())
        .zip(x.chunks_exact(QK))
    {
        let amax = xg.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let d = f16::from_f32(amax / 127.0);
        *sg = d;
        let df = d.to_f32();
        let inv = if df != 0.0 { 1.0 / df } else { 0.0 };
        for (o, &v) in qg.iter_mut().zip(xg) {
            *o = libm::roundf(v * inv).clamp(-127.0, 127.0) as i8;
        }
    }
}

/// Quantise one row to q4_0: `q` (cols / 2 bytes), `scales` (cols / QK).
pub fn quantize_row_q4(q: &mut [u8], scales: &mut [f16], x: &[f32]) {
    for ((qg, sg), xg) in q
        .chunks_exact_mut(QK / 2)
        .zip(scales.iter_mut())
        .zip(x.chunks_exact(QK))
    {
        let m = xg
            .iter()
            .fold(0.0f32, |m, &v| if v.abs() > m.abs() { v } else { m });
        let d = f16::from_f32(m / -8.0);
        *sg = d;
        let df = d.to_f32();
        let inv = if df != 0.0 { 1.0 / df } else { 0.0 };
        let code = |v: f32| (libm::roundf(v * inv) + 8.0).clamp(0.0, 15.0) as u8;
        let (lo, hi) = xg.split_at(QK / 2);
        for ((o, &l), &h) in qg.iter_mut().zip(lo).zip(hi) {
            *o = code(l) | (code(h) << 4);
        }
    }
}

/// Dequantise one q8_0 row into `out` (cols).
pub fn dequantize_row_q8(out: &mut [f32], q: &[i8], scales: &[f16]) {
    for ((og, qg), s) in out.chunks_exact_mut(QK).zip(q.chunks_exact(QK)).zip(scales) {
        let d = s.to_f32();
        for (o, &v) in og.iter_mut().zip(qg) {
            *o = v as f32 * d;
        }
    }
}

/// Dequantise one q4_0 row into `out` (cols).
pub fn dequantize_row_q4(out: &mut [f32], q: &[u8], scales: &[f16]) {
    for ((og, qg), s) in out
        .chunks_exact_mut(QK)
        .zip(q.chunks_exact(QK / 2))
        .zip(scales)
    {
        let d = s.to_f32();
        let (lo, hi) = og.split_at_mut(QK / 2);
        for ((l, h), &b) in lo.iter_mut().zip(hi).zip(qg) {
            *l = ((b & 0x0f) as i32 - 8) as f32 * d;
            *h = ((b >> 4) as i32 - 8) as f32 * d;
        }
    }
}
