//! Property suite: every public kernel (the SIMD path this build selects) against its
//! always-compiled `scalar` reference (tightly) and both against an f64 oracle written
//! here (per-op tolerances in `TOL`). Lengths run over `0..=4 * LANES + 7` so that short
//! inputs and every tail length are hit; inputs are random plus, where meaningful, ±0,
//! ±inf, NaN, subnormals and large values.
//!
//! Run it in every configuration (the lead's `make test` does):
//! `cargo test -p folio-kernels`, with `RUSTFLAGS="-C target-cpu=x86-64-v3"`, with
//! `--features std` (run-time AVX2 dispatch) and with `--target aarch64-unknown-linux-gnu`.
#![allow(clippy::needless_range_loop)] // index-based oracles read like the math

use folio_kernels::{quant, QK};
use half::f16;

/// Widest lane count of any path (AVX2 f32x8).
const LANES: usize = 8;
/// Longest vector length of the sweeps.
const MAX_LEN: usize = 4 * LANES + 7;

// ---------------------------------------------------------------------------------------
// Inputs

/// SplitMix64: small, deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed)
    }
    fn u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.u64() % n.max(1) as u64) as usize
    }
    /// Uniform in [-1, 1).
    fn unit(&mut self) -> f32 {
        ((self.u64() >> 40) as f32 / (1u64 << 23) as f32) - 1.0
    }
}

/// What a generated vector may contain.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Kind {
    /// Uniform in [-scale, scale).
    Plain,
    /// Plain, with about a quarter of the entries replaced by ±0, ±inf, huge or tiny values.
    Special,
    /// Plain, with ±0 and huge/tiny finite values but no inf or NaN.
    Wide,
}

fn vec_f32(rng: &mut Rng, n: usize, kind: Kind, scale: f32) -> Vec<f32> {
    (0..n)
        .map(|_| {
            let v = rng.unit() * scale;
            if kind == Kind::Plain || rng.below(4) != 0 {
                return v;
            }
            let finite = [0.0, -0.0, 1e18, -1e18, 3e-39, -1e-30, v * 1e6];
            let special = [f32::INFINITY, f32::NEG_INFINITY];
            match kind {
                Kind::Special if rng.below(3) == 0 => special[rng.below(2)],
                _ => finite[rng.below(finite.len())],
            }
        })
        .collect()
}

/// An f16 vector from the f32 generator, clamped into f16 range for finite kinds.
fn vec_f16(rng: &mut Rng, n: usize, kind: Kind, scale: f32) -> Vec<f16> {
    vec_f32(rng, n, kind, scale)
        .into_iter()
        .map(|v| {
            let v = if v.is_finite() {
                v.clamp(-60000.0, 60000.0)
            } else {
                v
            };
            f16::from_f32(v)
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// Oracle helpers (share no code with the crate)

/// f16 bits decoded by hand into f64 (exact).
fn f16_bits_to_f64(b: u16) -> f64 {
    let sign = if b & 0x8000 != 0 { -1.0 } else { 1.0 };
    let e = ((b >> 10) & 0x1f) as i32;
    let m = (b & 0x3ff) as f64;
    match e {
        0 => sign * m * 2f64.powi(-24),
        31 if m == 0.0 => sign * f64::INFINITY,
        31 => f64::NAN,
        _ => sign * (1.0 + m / 1024.0) * 2f64.powi(e - 15),
    }
}

/// Round-to-nearest-even f16 bits of `x` (not NaN), by search over the f16 magnitudes.
fn f16_nearest_bits(x: f64) -> u16 {
    let sign = if x.is_sign_negative() { 0x8000 } else { 0 };
    let a = x.abs();
    if a >= 65520.0 {
        return sign | 0x7c00; // 65504 + half an ulp ties to the even inf pattern
    }
    // Finite magnitudes 0..=0x7bff increase with their bits: the last one <= a.
    let (mut lo, mut hi) = (0u16, 0x7bffu16);
    while lo < hi {
        let mid = lo + (hi - lo).div_ceil(2);
        if f16_bits_to_f64(mid) <= a {
            lo = mid
        } else {
            hi = mid - 1
        }
    }
    let below = f16_bits_to_f64(lo);
    let above = if lo == 0x7bff {
        65536.0
    } else {
        f16_bits_to_f64(lo + 1)
    };
    let pick = match (a - below).partial_cmp(&(above - a)) {
        Some(std::cmp::Ordering::Less) => lo,
        Some(std::cmp::Ordering::Greater) => lo + 1,
        _ if lo % 2 == 0 => lo,
        _ => lo + 1,
    };
    sign | pick
}

fn h(v: f16) -> f64 {
    f16_bits_to_f64(v.to_bits())
}

/// `(sum a_i b_i, sum |a_i b_i|)` in f64.
fn dot64(a: impl IntoIterator<Item = f64>, b: impl IntoIterator<Item = f64>) -> (f64, f64) {
    a.into_iter()
        .zip(b)
        .fold((0.0, 0.0), |(s, m), (x, y)| (s + x * y, m + (x * y).abs()))
}

// ---------------------------------------------------------------------------------------
// Tolerances: |got - want| <= rel * mag + abs, where `mag` is the op's natural magnitude
// (sum |terms| for dot products, |want| for element-wise ops). Non-finite values must
// match in class (NaN, or inf of the same sign).

#[derive(Clone, Copy, Debug)]
struct Tol {
    rel: f64,
    abs: f64,
}

/// Per-op tolerance table: (op, SIMD vs scalar, each vs f64 oracle).
const TOL: &[(&str, Tol, Tol)] = &[
    // Dot products: f32 rounding of <= 4 * LANES + 7 (or 160) terms, any summation order.
    (
        "matvec_f32",
        Tol {
            rel: 2e-6,
            abs: 1e-37,
        },
        Tol {
            rel: 2e-6,
            abs: 1e-37,
        },
    ),
    (
        "matvec_f16",
        Tol {
            rel: 2e-6,
            abs: 1e-37,
        },
        Tol {
            rel: 2e-6,
            abs: 1e-37,
        },
    ),
    (
        "matvec_q8",
        Tol {
            rel: 2e-6,
            abs: 1e-37,
        },
        Tol {
            rel: 2e-6,
            abs: 1e-37,
        },
    ),
    (
        "matvec_q4",
        Tol {
            rel: 2e-6,
            abs: 1e-37,
        },
        Tol {
            rel: 2e-6,
            abs: 1e-37,
        },
    ),
    // Normalised outputs are O(|w| + |b|) = O(1).
    (
        "layernorm",
        Tol {
            rel: 1e-5,
            abs: 1e-5,
        },
        Tol {
            rel: 1e-5,
            abs: 1e-5,
        },
    ),
    // exp/tanh approximations: a few ulp; scalar 1 + tanh cancels for x < 0 (abs term).
    (
        "gelu_tanh",
        Tol {
            rel: 2e-6,
            abs: 1e-6,
        },
        Tol {
            rel: 2e-6,
            abs: 1e-6,
        },
    ),
    (
        "softmax",
        Tol {
            rel: 4e-6,
            abs: 1e-7,
        },
        Tol {
            rel: 4e-6,
            abs: 1e-7,
        },
    ),
    // Scores of |q|, |k| <= 1 through softmax, |v| <= 1.
    (
        "attention_f16",
        Tol {
            rel: 1e-5,
            abs: 1e-6,
        },
        Tol {
            rel: 1e-5,
            abs: 1e-6,
        },
    ),
];

/// Ops whose every path computes the same bits as the scalar reference (integer dot
/// products, one defined float order).
const EXACT_OPS: &[&str] = &["matvec_q8", "matvec_q4", "gelu_tanh"];

fn tol(op: &str) -> (Tol, Tol) {
    TOL.iter()
        .find(|t| t.0 == op)
        .map(|t| (t.1, t.2))
        .unwrap_or_else(|| panic!("no tolerance for {op}"))
}

fn same_class(a: f64, b: f64) -> bool {
    (a.is_nan() && b.is_nan()) || (a.is_infinite() && a == b)
}

/// Checks `got` against `want` with `t`; panics with the context on failure.
#[track_caller]
fn check(what: &str, ctx: &str, got: f32, want: f64, mag: f64, t: Tol) {
    let got = got as f64;
    if !got.is_finite() || !want.is_finite() {
        assert!(
            same_class(got, want),
            "{what} {ctx}: got {got}, want {want}"
        );
        return;
    }
    let err = (got - want).abs();
    assert!(
        err <= t.rel * mag + t.abs,
        "{what} {ctx}: got {got}, want {want}, err {err:e}, mag {mag:e}, tol {t:?}"
    );
}

/// SIMD vs scalar, then both vs the oracle, for one output element.
#[track_caller]
fn check3(op: &str, ctx: &str, simd: f32, scalar: f32, want: f64, mag: f64) {
    check3x(op, ctx, simd, scalar, want, mag, 0.0)
}

/// [`check3`] with `extra` added to the oracle tolerance (a bound on an error the op
/// makes by design, as the int8 activation rounding of q8_0 and q4_0). Ops whose paths are specified
/// bit-identical (`EXACT_OPS`) must match the scalar reference bit for bit.
#[track_caller]
fn check3x(op: &str, ctx: &str, simd: f32, scalar: f32, want: f64, mag: f64, extra: f64) {
    if EXACT_OPS.contains(&op) {
        assert!(
            simd.to_bits() == scalar.to_bits() || (simd.is_nan() && scalar.is_nan()),
            "{op} {ctx}: simd {simd} vs scalar {scalar} not bit-identical"
        );
    }
    let (ts, mut to) = tol(op);
    to.abs += extra;
    check(
        op,
        &format!("{ctx} simd vs scalar"),
        simd,
        scalar as f64,
        mag,
        ts,
    );
    check(op, &format!("{ctx} simd vs oracle"), simd, want, mag, to);
    check(
        op,
        &format!("{ctx} scalar vs oracle"),
        scalar,
        want,
        mag,
        to,
    );
}

// ---------------------------------------------------------------------------------------
// Matvecs: one generic sweep over encodings

/// One weight encoding: generate a `[rows, cols]` matrix, run both paths, decode w[r, c].
trait Enc {
    const OP: &'static str;
    /// Column counts to sweep.
    fn cols() -> Vec<usize>;
    fn gen(rng: &mut Rng, rows: usize, cols: usize, kind: Kind) -> Self;
    fn run(&self, out: &mut [f32], x: &[f32], simd: bool);
    /// The weight as f64, `None` for columns the encoding ignores (partial group).
    fn w(&self, r: usize, c: usize, cols: usize) -> Option<f64>;
    /// Rows the data holds (the kernels compute `min(out.len(), this)`).
    fn rows(&self, cols: usize) -> usize;
    /// A bound on row `r`'s error by design beyond f32 rounding (0 unless overridden).
    fn design_err(&self, _r: usize, _x: &[f32], _cols: usize) -> f64 {
        0.0
    }
    /// The oracle's value as the op defines it, from the f64 dot product `want`.
    fn defined(&self, want: f64, _x: &[f32], _cols: usize) -> f64 {
        want
    }
}

/// Bound on the error of int8 activations for one row: in a group with `2^-100 <= amax`
/// (finite), each element is off by at most half a step `amax / 127` (0.51 with the f32
/// roundings of `x * (127 / amax)` and of the scale), times `|w|`; a group below `2^-100`
/// counts as zero, off by at most `amax` an element. Computed from the definition in
/// `quantize_act.rs`, not from the kernel.
fn int8_act_err(w: impl Fn(usize) -> Option<f64>, x: &[f32]) -> f64 {
    let mut e = 0.0;
    for (g, xg) in x.chunks_exact(QK).enumerate() {
        let amax = xg.iter().fold(0.0f64, |m, v| m.max((*v as f64).abs()));
        let sw: f64 = (0..QK).filter_map(|k| w(g * QK + k)).map(f64::abs).sum();
        if !amax.is_finite() {
            continue;
        }
        e += if amax >= 2f64.powi(-100) {
            sw * 0.51 * amax / 127.0
        } else {
            sw * amax
        };
    }
    e
}

/// The int8-activation ops define a row that reads a non-finite activation as NaN.
fn int8_act_defined(want: f64, x: &[f32], cols: usize) -> f64 {
    let used = &x[..cols / QK * QK];
    if used.iter().all(|v| v.is_finite()) {
        want
    } else {
        f64::NAN
    }
}

/// `x` quantised by `quantize_act`: its SIMD path or its scalar reference.
fn act(x: &[f32], simd: bool) -> (Vec<i8>, Vec<f32>) {
    let (mut xq, mut xs) = (vec![0i8; x.len()], vec![0.0f32; x.len() / QK]);
    if simd {
        folio_kernels::quantize_act(&mut xq, &mut xs, x);
    } else {
        folio_kernels::quantize_act::scalar::quantize_act(&mut xq, &mut xs, x);
    }
    (xq, xs)
}

/// Column `c`'s nibble of a q4_0 row (llama.cpp's Q4_0: a group's byte `j` holds column
/// `j` low and `j + 16` high).
fn q4_nibble(row: &[u8], c: usize) -> u8 {
    let (g, j) = (c / QK, c % QK);
    let b = row[g * QK / 2 + j % (QK / 2)];
    if j < QK / 2 {
        b & 0x0f
    } else {
        b >> 4
    }
}

struct F32W(Vec<f32>);
struct F16W(Vec<f16>);
/// A q8_0 (`C = i8`) or q4_0 (`C = u8`, two nibbles a byte) matrix: codes and scales.
struct Quant<C>(Vec<C>, Vec<f16>);
type Q8W = Quant<i8>;
type Q4W = Quant<u8>;

/// What differs between q8_0 and q4_0: the code type and what is done with it.
trait Code: Copy {
    const OP: &'static str;
    /// Columns per code.
    const PER: usize;
    /// The columns past the last full group hold this junk, which the kernels must ignore.
    const JUNK: Self;
    fn quantize(q: &mut [Self], s: &mut [f16], row: &[f32]);
    fn matvec(out: &mut [f32], q: &[Self], s: &[f16], xq: &[i8], xs: &[f32], simd: bool);
    /// Column `c`'s integer value in a row of codes.
    fn value(row: &[Self], c: usize) -> i32;
}

impl Code for i8 {
    const OP: &'static str = "matvec_q8";
    const PER: usize = 1;
    const JUNK: i8 = 99;
    fn quantize(q: &mut [i8], s: &mut [f16], row: &[f32]) {
        quant::quantize_row_q8(q, s, row)
    }
    fn matvec(out: &mut [f32], q: &[i8], s: &[f16], xq: &[i8], xs: &[f32], simd: bool) {
        if simd {
            folio_kernels::matvec_q8(out, q, s, xq, xs)
        } else {
            folio_kernels::matvec_q8::scalar::matvec_q8(out, q, s, xq, xs)
        }
    }
    fn value(row: &[i8], c: usize) -> i32 {
        row[c].into()
    }
}

impl Code for u8 {
    const OP: &'static str = "matvec_q4";
    const PER: usize = 2;
    const JUNK: u8 = 0x5a;
    fn quantize(q: &mut [u8], s: &mut [f16], row: &[f32]) {
        quant::quantize_row_q4(q, s, row)
    }
    fn matvec(out: &mut [f32], q: &[u8], s: &[f16], xq: &[i8], xs: &[f32], simd: bool) {
        if simd {
            folio_kernels::matvec_q4(out, q, s, xq, xs)
        } else {
            folio_kernels::matvec_q4::scalar::matvec_q4(out, q, s, xq, xs)
        }
    }
    fn value(row: &[u8], c: usize) -> i32 {
        i32::from(q4_nibble(row, c)) - 8
    }
}

/// Quantised column counts: several full groups (one block of 8 groups, and more, with
/// every kind of last block: full, odd, even), plus a partial last group and a sub-group
/// row (both defined: ignored columns, and zeros).
fn quant_cols() -> Vec<usize> {
    vec![
        0,
        8,
        QK,
        2 * QK,
        QK + 8,
        3 * QK,
        5 * QK,
        8 * QK,
        9 * QK + 8,
        12 * QK,
        17 * QK,
        23 * QK,
    ]
}

/// `Enc` for an unquantised weight `$w` of kernel `$op`: made by `$gen`, read as f64 by `$wide`.
macro_rules! float_enc {
    ($w:ident, $op:ident, $gen:ident, $wide:expr) => {
        impl Enc for $w {
            const OP: &'static str = stringify!($op);
            fn cols() -> Vec<usize> {
                (0..=MAX_LEN).collect()
            }
            fn gen(rng: &mut Rng, rows: usize, cols: usize, kind: Kind) -> Self {
                $w($gen(rng, rows * cols, kind, 1.0))
            }
            fn run(&self, out: &mut [f32], x: &[f32], simd: bool) {
                if simd {
                    folio_kernels::$op(out, &self.0, x)
                } else {
                    folio_kernels::$op::scalar::$op(out, &self.0, x)
                }
            }
            fn w(&self, r: usize, c: usize, cols: usize) -> Option<f64> {
                Some($wide(self.0[r * cols + c]))
            }
            fn rows(&self, cols: usize) -> usize {
                self.0.len().checked_div(cols).unwrap_or(usize::MAX)
            }
        }
    };
}
float_enc!(F32W, matvec_f32, vec_f32, f64::from);
float_enc!(F16W, matvec_f16, vec_f16, h);

/// Quantisation input: uniform, or (Special/Wide) rows with some all-zero groups and a
/// few large-magnitude groups (scales stay in f16 range).
fn quant_source(rng: &mut Rng, rows: usize, cols: usize, kind: Kind) -> Vec<f32> {
    let mut w = vec_f32(rng, rows * cols, Kind::Plain, 1.0);
    if kind != Kind::Plain {
        for g in w.chunks_mut(QK) {
            match rng.below(4) {
                0 => g.fill(0.0),
                1 => g.iter_mut().for_each(|v| *v *= 1000.0),
                _ => {}
            }
        }
    }
    w
}

/// Rows a quantised matrix holds; without one full group the kernels zero all of `out`.
fn quant_rows(q_len: usize, row_len: usize, s_len: usize, groups: usize) -> usize {
    match s_len.checked_div(groups) {
        None => usize::MAX,
        Some(by_scales) => by_scales.min(q_len / row_len),
    }
}

impl<C: Code> Enc for Quant<C> {
    const OP: &'static str = C::OP;
    fn cols() -> Vec<usize> {
        quant_cols()
    }
    fn gen(rng: &mut Rng, rows: usize, cols: usize, kind: Kind) -> Self {
        let (g, rb) = (cols / QK, cols / C::PER);
        let src = quant_source(rng, rows, g * QK, kind);
        let (mut q, mut s) = (vec![C::JUNK; rows * rb], vec![f16::ZERO; rows * g]);
        for r in 0..rows {
            let row = &src[r * g * QK..(r + 1) * g * QK];
            let codes = &mut q[r * rb..r * rb + g * QK / C::PER];
            C::quantize(codes, &mut s[r * g..(r + 1) * g], row);
        }
        Quant(q, s)
    }
    fn run(&self, out: &mut [f32], x: &[f32], simd: bool) {
        let (xq, xs) = act(x, simd);
        C::matvec(out, &self.0, &self.1, &xq, &xs, simd)
    }
    fn w(&self, r: usize, c: usize, cols: usize) -> Option<f64> {
        let g = cols / QK;
        (c < g * QK).then(|| {
            let row = &self.0[r * (cols / C::PER)..];
            f64::from(C::value(row, c)) * h(self.1[r * g + c / QK])
        })
    }
    fn rows(&self, cols: usize) -> usize {
        quant_rows(self.0.len(), cols / C::PER, self.1.len(), cols / QK)
    }
    fn design_err(&self, r: usize, x: &[f32], cols: usize) -> f64 {
        int8_act_err(|c| self.w(r, c, cols), x)
    }
    fn defined(&self, want: f64, x: &[f32], cols: usize) -> f64 {
        int8_act_defined(want, x, cols)
    }
}

/// The one matvec sweep: rows 0..=9 (4-row blocks plus every remainder), every column
/// count of the encoding, plain and special inputs, and `out` longer than the matrix
/// (rows past it must stay untouched).
fn sweep_matvec<E: Enc>(seed: u64) {
    let mut rng = Rng::new(seed);
    const SENTINEL: f32 = 12345.0;
    for kind in [Kind::Plain, Kind::Special] {
        for cols in E::cols() {
            for rows in 0..=9 {
                let m = E::gen(&mut rng, rows, cols, kind);
                let x = vec_f32(&mut rng, cols, kind, 1.0);
                let n_out = rows + rng.below(3);
                let (mut a, mut b) = (vec![SENTINEL; n_out], vec![SENTINEL; n_out]);
                m.run(&mut a, &x, true);
                m.run(&mut b, &x, false);
                let computed = n_out.min(m.rows(cols));
                for r in 0..n_out {
                    let ctx = format!("{kind:?} rows {rows} cols {cols} r {r}");
                    if r >= computed {
                        assert_eq!(
                            a[r].to_bits(),
                            SENTINEL.to_bits(),
                            "{} {ctx}: row past the matrix written",
                            E::OP
                        );
                        assert_eq!(
                            b[r].to_bits(),
                            SENTINEL.to_bits(),
                            "{} {ctx}: scalar wrote past",
                            E::OP
                        );
                        continue;
                    }
                    // Columns the encoding ignores (a partial group) take no part.
                    let used: Vec<(f64, f64)> = (0..cols)
                        .filter_map(|c| m.w(r, c, cols).map(|w| (w, x[c] as f64)))
                        .collect();
                    let (want, mag) = dot64(used.iter().map(|p| p.0), used.iter().map(|p| p.1));
                    let want = m.defined(want, &x, cols);
                    // `0 * inf` terms are NaN in f32 and f64 alike; `mag` ignores them.
                    check3x(
                        E::OP,
                        &ctx,
                        a[r],
                        b[r],
                        want,
                        if mag.is_finite() { mag } else { 0.0 },
                        m.design_err(r, &x, cols),
                    );
                }
            }
        }
    }
}

#[test]
fn matvec_f32_props() {
    sweep_matvec::<F32W>(1);
}

#[test]
fn matvec_f16_props() {
    sweep_matvec::<F16W>(2);
}

#[test]
fn matvec_q8_props() {
    sweep_matvec::<Q8W>(3);
}

#[test]
fn matvec_q4_props() {
    sweep_matvec::<Q4W>(4);
}

/// Model-sized shapes (the 4-row blocks over many groups), against scalar and oracle.
#[test]
fn matvec_lab_shapes() {
    let mut rng = Rng::new(5);
    for (rows, cols) in [(64, 64), (385, 384), (66, 1536)] {
        let x = vec_f32(&mut rng, cols, Kind::Plain, 1.0);
        let check_all = |name: &str, a: &[f32], b: &[f32], w: &dyn Fn(usize, usize) -> f64| {
            for r in 0..rows {
                let (want, mag) = dot64((0..cols).map(|c| w(r, c)), x.iter().map(|&v| v as f64));
                let extra = if EXACT_OPS.contains(&name) {
                    int8_act_err(|c| Some(w(r, c)), &x)
                } else {
                    0.0
                };
                check3x(
                    name,
                    &format!("{rows}x{cols} r {r}"),
                    a[r],
                    b[r],
                    want,
                    mag,
                    extra,
                );
            }
        };
        let (mut a, mut b) = (vec![0.0; rows], vec![0.0; rows]);
        let m = F16W::gen(&mut rng, rows, cols, Kind::Plain);
        m.run(&mut a, &x, true);
        m.run(&mut b, &x, false);
        check_all("matvec_f16", &a, &b, &|r, c| m.w(r, c, cols).unwrap_or(0.0));
        let m = Q8W::gen(&mut rng, rows, cols, Kind::Plain);
        m.run(&mut a, &x, true);
        m.run(&mut b, &x, false);
        check_all("matvec_q8", &a, &b, &|r, c| m.w(r, c, cols).unwrap_or(0.0));
        let m = Q4W::gen(&mut rng, rows, cols, Kind::Plain);
        m.run(&mut a, &x, true);
        m.run(&mut b, &x, false);
        check_all("matvec_q4", &a, &b, &|r, c| m.w(r, c, cols).unwrap_or(0.0));
        let m = F32W::gen(&mut rng, rows, cols, Kind::Plain);
        m.run(&mut a, &x, true);
        m.run(&mut b, &x, false);
        check_all("matvec_f32", &a, &b, &|r, c| m.w(r, c, cols).unwrap_or(0.0));
    }
}

// ---------------------------------------------------------------------------------------
// Element-wise ops

/// Runs `f` on every length `0..=MAX_LEN` for each input kind, several trials each.
fn for_lengths(seed: u64, kinds: &[Kind], mut f: impl FnMut(&mut Rng, usize, Kind)) {
    let mut rng = Rng::new(seed);
    for &kind in kinds {
        for n in 0..=MAX_LEN {
            for _ in 0..3 {
                f(&mut rng, n, kind);
            }
        }
    }
}

#[test]
fn layernorm_props() {
    for_lengths(10, &[Kind::Plain, Kind::Wide], |rng, n, kind| {
        let scale = if rng.below(2) == 0 { 3.0 } else { 1e10 };
        let x = vec_f32(rng, n, kind, scale);
        if x.iter().any(|v| v.abs() > 1e17) {
            return; // squares of huge values overflow f32 by definition
        }
        let w = vec_f32(rng, n, Kind::Plain, 2.0);
        let b = vec_f32(rng, n, Kind::Plain, 1.0);
        let wh: Vec<f16> = w.iter().map(|&v| f16::from_f32(v)).collect();
        let bh: Vec<f16> = b.iter().map(|&v| f16::from_f32(v)).collect();
        let eps = 1e-5f32;
        // f64 oracle, two-pass, biased variance.
        let nf = n.max(1) as f64;
        let mean = x.iter().map(|&v| v as f64).sum::<f64>() / nf;
        let var = x.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / nf;
        let rstd = 1.0 / (var + eps as f64).sqrt();
        let (mut a, mut s) = (vec![0.0; n], vec![0.0; n]);
        folio_kernels::layernorm_f32(&mut a, &x, &w, &b, eps);
        folio_kernels::layernorm::scalar::layernorm_f32(&mut s, &x, &w, &b, eps);
        for i in 0..n {
            let want = (x[i] as f64 - mean) * rstd * w[i] as f64 + b[i] as f64;
            let mag = want.abs().max((w[i] as f64).abs() + (b[i] as f64).abs());
            check3(
                "layernorm",
                &format!("f32 n {n} i {i}"),
                a[i],
                s[i],
                want,
                mag,
            );
        }
        folio_kernels::layernorm_f16(&mut a, &x, &wh, &bh, eps);
        folio_kernels::layernorm::scalar::layernorm_f16(&mut s, &x, &wh, &bh, eps);
        for i in 0..n {
            let want = (x[i] as f64 - mean) * rstd * h(wh[i]) + h(bh[i]);
            let mag = want.abs().max(h(wh[i]).abs() + h(bh[i]).abs());
            check3(
                "layernorm",
                &format!("f16 n {n} i {i}"),
                a[i],
                s[i],
                want,
                mag,
            );
        }
    });
}

fn gelu64(x: f64) -> f64 {
    0.5 * x * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x * x * x)).tanh())
}

#[test]
fn gelu_props() {
    for_lengths(11, &[Kind::Plain, Kind::Special], |rng, n, kind| {
        let mut a = vec_f32(rng, n, kind, 10.0);
        let mut s = a.clone();
        let x = a.clone();
        folio_kernels::gelu_tanh(&mut a);
        folio_kernels::gelu::scalar::gelu_tanh(&mut s);
        for i in 0..n {
            let x = x[i] as f64;
            // x^3 overflows f32 past ~4.9e12: both paths take tanh(±inf) = ±1 there.
            let want = if x.is_finite() && x.abs() > 1e12 {
                if x > 0.0 {
                    x
                } else {
                    -0.0
                }
            } else {
                gelu64(x)
            };
            check3(
                "gelu_tanh",
                &format!("n {n} x {x}"),
                a[i],
                s[i],
                want,
                want.abs(),
            );
        }
    });
}

/// GELU's documented error against the exact tanh GELU (f64) over `[-12, 12]` (2^21
/// points, and the f32 neighbours of 0): relative where the result is at least 1e-3 in
/// magnitude, absolute below (for `x < -3` the result is tiny and carries the rounding of
/// `u` magnified by `2u` in the exponent). Prints both maxima.
#[test]
fn gelu_error() {
    let n = 1 << 21;
    let mut x: Vec<f32> = (0..n).map(|i| -12.0 + 24.0 * i as f32 / n as f32).collect();
    x.extend([0.0, -0.0, 1e-30, -1e-30, 1e-7, -1e-7, f32::MIN_POSITIVE]);
    let mut y = x.clone();
    folio_kernels::gelu_tanh(&mut y);
    let (mut rel, mut abs, mut rel1) = (0.0f64, 0.0f64, 0.0f64);
    for (&x, &y) in x.iter().zip(&y) {
        // `0.5 (1 + tanh u) = 1 / (1 + e^(-2u))` in f64: no cancellation for x < 0.
        let x64 = x as f64;
        let u = (2.0 / std::f64::consts::PI).sqrt() * (x64 + 0.044715 * x64 * x64 * x64);
        let want = x64 / (1.0 + (-2.0 * u).exp());
        let err = (y as f64 - want).abs();
        if want.abs() >= 1e-3 {
            rel = rel.max(err / want.abs());
            if x > -1.0 {
                rel1 = rel1.max(err / want.abs());
            }
        } else {
            abs = abs.max(err);
        }
    }
    println!(
        "gelu_tanh: max relative error {rel:.3e} where |gelu| >= 1e-3 ({rel1:.3e} for x > -1), \
         max absolute error {abs:.3e} below"
    );
    assert!(
        rel <= 2e-6 && abs <= 2e-9,
        "relative {rel:e}, absolute {abs:e}"
    );
}

/// `math::exp` (the scalar twin) gives the bits of `math::exp_f32x8` on every input class.
#[test]
fn exp_twins_agree() {
    use wide::f32x8;
    let mut rng = Rng::new(20);
    let mut xs: Vec<f32> = (0..1 << 16).map(|_| rng.unit() * 100.0).collect();
    xs.extend([
        0.0,
        -0.0,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
        -87.336_55,
        -87.34,
        88.376_26,
        88.38,
        1e-30,
        -1e30,
    ]);
    xs.resize(xs.len().next_multiple_of(8), 0.5);
    for c in xs.chunks_exact(8) {
        let v = folio_kernels::math::exp_f32x8(f32x8::from(<[f32; 8]>::try_from(c).unwrap()));
        for (&x, y) in c.iter().zip(v.to_array()) {
            let s = folio_kernels::math::exp(x);
            assert!(
                s.to_bits() == y.to_bits() || (s.is_nan() && y.is_nan()),
                "exp({x}): scalar {s} vs 8 lanes {y}"
            );
        }
    }
}

#[test]
fn softmax_props() {
    for_lengths(
        12,
        &[Kind::Plain, Kind::Wide, Kind::Special],
        |rng, n, kind| {
            let mut x = vec_f32(rng, n, kind, 8.0);
            // Masked positions (-inf) are meaningful; +inf (a NaN softmax) only sometimes.
            for v in x.iter_mut() {
                if *v == f32::INFINITY && rng.below(4) != 0 {
                    *v = f32::NEG_INFINITY;
                }
            }
            let (mut a, mut s) = (x.clone(), x.clone());
            folio_kernels::softmax(&mut a);
            folio_kernels::softmax::scalar::softmax(&mut s);
            let m = x
                .iter()
                .map(|&v| v as f64)
                .fold(f64::NEG_INFINITY, f64::max);
            let e: Vec<f64> = x.iter().map(|&v| (v as f64 - m).exp()).collect();
            let sum: f64 = e.iter().sum();
            for i in 0..n {
                let want = e[i] / sum;
                check3(
                    "softmax",
                    &format!("{kind:?} n {n} i {i} x {}", x[i]),
                    a[i],
                    s[i],
                    want,
                    want.abs(),
                );
            }
        },
    );
}

#[test]
fn argmax_props() {
    for_lengths(13, &[Kind::Plain, Kind::Special], |rng, n, kind| {
        let mut x = vec_f32(rng, n, kind, 1.0);
        for v in x.iter_mut() {
            match rng.below(8) {
                0 => *v = f32::NAN,
                1 => *v = 0.5, // ties
                _ => {}
            }
        }
        if n > 0 && rng.below(5) == 0 {
            x.fill(if rng.below(2) == 0 {
                f32::NAN
            } else {
                f32::NEG_INFINITY
            });
        }
        // Oracle: the first index of the largest non-NaN value, 0 when none beats -inf.
        let best = x
            .iter()
            .filter(|v| !v.is_nan())
            .fold(f64::NEG_INFINITY, |m, &v| m.max(v as f64));
        let want = if best == f64::NEG_INFINITY {
            0
        } else {
            x.iter().position(|&v| v as f64 == best).unwrap()
        };
        assert_eq!(folio_kernels::argmax(&x), want, "{x:?}");
        assert_eq!(folio_kernels::argmax::scalar::argmax(&x), want, "{x:?}");
    });
}

#[test]
fn convert_props() {
    let mut rng = Rng::new(14);
    // Every f16 bit pattern widens exactly (NaN stays NaN).
    let all: Vec<f16> = (0..=u16::MAX).map(f16::from_bits).collect();
    let mut a = vec![0.0f32; all.len()];
    folio_kernels::f16_to_f32(&mut a, &all);
    for (v, &g) in all.iter().zip(&a) {
        let want = h(*v);
        assert!(
            g as f64 == want || (want.is_nan() && g.is_nan()),
            "{:#06x}: {g} vs {want}",
            v.to_bits()
        );
    }
    for n in 0..=MAX_LEN {
        for kind in [Kind::Plain, Kind::Special] {
            // f32 -> f16: random values across the f16 range, overflow, subnormals, ties.
            let mut x = vec_f32(&mut rng, n, kind, 70000.0);
            for v in x.iter_mut() {
                match rng.below(5) {
                    0 => *v *= 1e-9,
                    1 => *v = f32::NAN,
                    2 => *v = (rng.below(2048) as f32 + 0.5) * 2f32.powi(rng.below(30) as i32 - 24),
                    _ => {}
                }
            }
            let (mut a, mut s) = (vec![f16::ZERO; n], vec![f16::ZERO; n]);
            folio_kernels::f32_to_f16(&mut a, &x);
            folio_kernels::convert::scalar::f32_to_f16(&mut s, &x);
            for i in 0..n {
                let (g, r) = (a[i], s[i]);
                if x[i].is_nan() {
                    assert!(g.is_nan() && r.is_nan(), "NaN lost: {g} {r}");
                    continue;
                }
                assert_eq!(
                    g.to_bits(),
                    r.to_bits(),
                    "f32_to_f16({}) simd {g} scalar {r}",
                    x[i]
                );
                assert_eq!(
                    g.to_bits(),
                    f16_nearest_bits(x[i] as f64),
                    "f32_to_f16({}) vs oracle",
                    x[i]
                );
            }
            // f16 -> f32 on the same lengths (tails).
            let hx: Vec<f16> = (0..n).map(|_| f16::from_bits(rng.u64() as u16)).collect();
            let (mut a, mut s) = (vec![0.0f32; n], vec![0.0f32; n]);
            folio_kernels::f16_to_f32(&mut a, &hx);
            folio_kernels::convert::scalar::f16_to_f32(&mut s, &hx);
            for i in 0..n {
                assert!(a[i].to_bits() == s[i].to_bits() || (a[i].is_nan() && s[i].is_nan()));
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Attention

#[test]
fn attention_props() {
    let mut rng = Rng::new(15);
    let mut cases: Vec<(usize, usize, usize)> = Vec::new(); // (hs, n_pos, stride extra)
    for hs in 0..=MAX_LEN {
        for n_pos in [0, 1, 2, 5, 9] {
            cases.push((hs, n_pos, rng.below(3) * 8));
        }
    }
    cases.extend([
        (32, 256, 96),
        (64, 256, 320),
        (64, 100, 0),
        (72, 9, 8),
        (128, 33, 0),
        (139, 7, 8),
    ]);
    for (hs, n_pos, extra) in cases {
        let stride = hs + extra;
        let q = vec_f32(&mut rng, hs, Kind::Plain, 1.0);
        // Sometimes the cache is one position short (that position scores 0 / adds nothing),
        // or `scores` is shorter than `n_pos` (positions past it are skipped).
        let kv_pos = if rng.below(4) == 0 {
            n_pos.saturating_sub(1)
        } else {
            n_pos
        };
        let len = if kv_pos == 0 {
            0
        } else {
            (kv_pos - 1) * stride + hs
        };
        let k = vec_f16(&mut rng, len, Kind::Plain, 1.0);
        let v = vec_f16(&mut rng, len, Kind::Plain, 1.0);
        let n_scores = if rng.below(4) == 0 { n_pos / 2 } else { n_pos };
        let (mut a, mut b) = (vec![7.0; hs], vec![7.0; hs]);
        let (mut sa, mut sb) = (vec![0.0; n_scores], vec![0.0; n_scores]);
        folio_kernels::attention_f16(&mut a, &q, &k, &v, stride, n_pos, &mut sa);
        folio_kernels::attention::scalar::attention_f16(&mut b, &q, &k, &v, stride, n_pos, &mut sb);
        // Oracle.
        let n = n_pos.min(n_scores);
        let at = |kv: &[f16], t: usize, i: usize| {
            kv.get(t * stride + i)
                .filter(|_| t * stride + hs <= kv.len())
                .map(|&x| h(x))
        };
        let s: Vec<f64> = (0..n)
            .map(|t| {
                (0..hs)
                    .map(|i| at(&k, t, i).unwrap_or(0.0) * q[i] as f64)
                    .sum::<f64>()
                    / (hs as f64).sqrt()
            })
            .collect();
        let m = s.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let e: Vec<f64> = s.iter().map(|x| (x - m).exp()).collect();
        let sum: f64 = e.iter().sum();
        for i in 0..hs {
            let (want, mag) = dot64(
                (0..n).map(|t| e[t] / sum),
                (0..n).map(|t| at(&v, t, i).unwrap_or(0.0)),
            );
            let ctx = format!(
                "hs {hs} n_pos {n_pos} stride {stride} kv {kv_pos} scores {n_scores} i {i}"
            );
            check3("attention_f16", &ctx, a[i], b[i], want, mag);
        }
    }
}

// ---------------------------------------------------------------------------------------
// Quantisation round trips (the one definition in quant.rs)

#[test]
fn quant_q8_round_trip() {
    let mut rng = Rng::new(16);
    for groups in [1, 2, 5, 12] {
        for kind in [Kind::Plain, Kind::Wide] {
            let cols = groups * QK;
            let mut x = vec_f32(&mut rng, cols, kind, 1.0);
            x[..QK].fill(0.0); // a zero group
            x.iter_mut()
                .for_each(|v| *v = v.clamp(-60000.0, 60000.0) * 2.0);
            let (mut q, mut s, mut y) =
                (vec![0i8; cols], vec![f16::ZERO; groups], vec![0.0f32; cols]);
            quant::quantize_row_q8(&mut q, &mut s, &x);
            quant::dequantize_row_q8(&mut y, &q, &s);
            for c in 0..cols {
                let d = h(s[c / QK]).abs();
                let amax = x[c / QK * QK..][..QK]
                    .iter()
                    .fold(0.0f64, |m, &v| m.max((v as f64).abs()));
                assert!(
                    d <= amax / 127.0 * (1.0 + 1e-3) + 1e-7,
                    "scale {d} vs amax {amax}"
                );
                assert!((-127..=127).contains(&q[c]));
                // The format's own decode: q * scale.
                assert_eq!(y[c] as f64, q[c] as f64 * h(s[c / QK]) as f32 as f64);
                let err = (x[c] as f64 - y[c] as f64).abs();
                assert!(
                    err <= d / 2.0 * (1.0 + 1e-5) + 1e-7 * d,
                    "q8 c {c}: x {} -> {} (d {d})",
                    x[c],
                    y[c]
                );
                if amax == 0.0 {
                    assert_eq!((q[c], y[c]), (0, 0.0));
                }
            }
        }
    }
}

#[test]
fn quant_q4_round_trip() {
    let mut rng = Rng::new(17);
    for groups in [1, 2, 5, 12] {
        for kind in [Kind::Plain, Kind::Wide] {
            let cols = groups * QK;
            let mut x = vec_f32(&mut rng, cols, kind, 1.0);
            x[..QK].fill(0.0);
            x.iter_mut()
                .for_each(|v| *v = v.clamp(-60000.0, 60000.0) * 2.0);
            let (mut q, mut s, mut y) = (
                vec![0u8; cols / 2],
                vec![f16::ZERO; groups],
                vec![0.0f32; cols],
            );
            quant::quantize_row_q4(&mut q, &mut s, &x);
            quant::dequantize_row_q4(&mut y, &q, &s);
            for c in 0..cols {
                let d = h(s[c / QK]);
                let nib = q4_nibble(&q, c) as i32;
                assert_eq!(
                    y[c] as f64,
                    (nib - 8) as f64 * d as f32 as f64,
                    "format decode c {c}"
                );
                let err = (x[c] as f64 - y[c] as f64).abs();
                // Codes 0..=15 hold -8..=7 steps of d = m / -8: the value of largest
                // magnitude maps to -8 exactly; a value past +7.5 steps (only the opposite
                // sign of that extreme) clamps to 7 and may miss by up to one step.
                let steps = if d != 0.0 { x[c] as f64 / d } else { 0.0 };
                let bound = if steps > 7.5 {
                    d.abs() * (1.0 + 1e-3)
                } else {
                    d.abs() / 2.0 * (1.0 + 1e-5) + 1e-7 * d.abs()
                };
                assert!(
                    err <= bound,
                    "q4 c {c}: x {} -> {} (d {d}, steps {steps})",
                    x[c],
                    y[c]
                );
                if d == 0.0 {
                    assert_eq!((nib, y[c]), (8, 0.0), "zero group");
                }
            }
        }
    }
}

/// `quantize_act`: the SIMD path equals the scalar reference bit for bit, and both equal
/// the definition in `quantize_act.rs` computed here in f64 (a product of two f32 is
/// exact in f64, so rounding it to f32 once gives the f32 product): per group `amax`,
/// NaN scale and zero codes when not finite, zero below `2^-100`, else `xs = amax / 127`
/// and `round_ties_even(x * (127 / amax))`. Codes past the last full group are 0.
#[test]
fn quantize_act_props() {
    let mut rng = Rng::new(19);
    for kind in [Kind::Plain, Kind::Special, Kind::Wide] {
        for n in (0..=5 * QK + 7).step_by(3) {
            for trial in 0..3 {
                let mut x = vec_f32(&mut rng, n, kind, 1.0);
                if trial == 1 {
                    // Tiny and NaN groups, and exact ties (x * 127 / amax = k + 0.5).
                    for (g, xg) in x.chunks_exact_mut(QK).enumerate() {
                        match g % 3 {
                            0 => xg.iter_mut().for_each(|v| *v *= 1e-31),
                            1 => xg[g % QK] = f32::NAN,
                            _ => {
                                xg[0] = 127.0;
                                xg[1] = 2.5;
                                xg[2] = -3.5;
                            }
                        }
                    }
                }
                let (a, b) = (act(&x, true), act(&x, false));
                assert_eq!(a.0, b.0, "{kind:?} n {n}: codes differ");
                let bits = |v: &[f32]| v.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&a.1), bits(&b.1), "{kind:?} n {n}: scales differ");
                for (g, xg) in x.chunks_exact(QK).enumerate() {
                    let amax = xg.iter().fold(0.0f64, |m, v| {
                        let v = (*v as f64).abs();
                        if v.is_nan() || m.is_nan() {
                            f64::NAN
                        } else {
                            m.max(v)
                        }
                    });
                    let (codes, xs) = (&a.0[g * QK..][..QK], a.1[g]);
                    let ctx = format!("{kind:?} n {n} group {g} amax {amax}");
                    if !amax.is_finite() {
                        assert!(xs.is_nan(), "{ctx}: xs {xs}");
                        assert!(codes.iter().all(|&c| c == 0), "{ctx}");
                    } else if amax < 2f64.powi(-100) {
                        assert_eq!(xs.to_bits(), 0, "{ctx}");
                        assert!(codes.iter().all(|&c| c == 0), "{ctx}");
                    } else {
                        let amax = amax as f32;
                        assert_eq!(xs.to_bits(), (amax / 127.0).to_bits(), "{ctx}");
                        let inv = (127.0 / amax) as f64;
                        for (c, (&code, &v)) in codes.iter().zip(xg).enumerate() {
                            let p = (v as f64 * inv) as f32 as f64;
                            let want = p.round_ties_even();
                            assert!(want.abs() <= 127.0, "{ctx} c {c}");
                            assert_eq!(code as f64, want, "{ctx} c {c}: x {v}");
                        }
                    }
                }
                let tail = n / QK * QK;
                assert!(a.0[tail..].iter().all(|&c| c == 0), "n {n}: tail codes");
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Measurements behind documented numbers

/// `math::exp_f32x8`: max relative error against f64 over [-87, 88], and the edges.
#[test]
fn exp_f32x8_error() {
    use wide::f32x8;
    let n = 1 << 20;
    let mut worst = 0.0f64;
    for i in (0..n).step_by(8) {
        let xs: [f32; 8] = std::array::from_fn(|k| -87.0 + 175.0 * (i + k) as f32 / n as f32);
        let y = folio_kernels::math::exp_f32x8(f32x8::from(xs)).to_array();
        for (x, y) in xs.iter().zip(y) {
            let want = (*x as f64).exp();
            worst = worst.max(((y as f64) - want).abs() / want);
        }
    }
    println!("exp_f32x8: max relative error {worst:.3e} over [-87, 88]");
    assert!(worst <= 2e-7, "exp_f32x8 max relative error {worst:e}");
    let e = folio_kernels::math::exp_f32x8(f32x8::from([
        0.0,
        f32::NEG_INFINITY,
        f32::INFINITY,
        f32::NAN,
        -90.0,
        89.0,
        1.0,
        -1.0,
    ]))
    .to_array();
    assert_eq!(e[0], 1.0);
    assert_eq!(e[1], 0.0);
    assert_eq!(e[2], f32::INFINITY);
    assert!(e[3].is_nan());
    assert_eq!(e[4], 0.0);
    assert_eq!(e[5], f32::INFINITY);
    assert!((e[6] as f64 - 1f64.exp()).abs() < 1e-6 && (e[7] as f64 - (-1f64).exp()).abs() < 1e-7);
}

/// The int8 activations' cost in accuracy at a lab shape (256 x 384, random `x`): the
/// kernels' error against the f64 product of the dequantised weights with the f32 `x`,
/// relative to `sum |w x|`. Half a step of `amax / 127` per element bounds it by
/// `0.5 / 127 = 3.9e-3`; asserts that bound and prints the figures.
#[test]
fn int8_activation_error() {
    let mut rng = Rng::new(18);
    let (rows, cols) = (256, 384);
    let q8 = Q8W::gen(&mut rng, rows, cols, Kind::Plain);
    let q4 = Q4W::gen(&mut rng, rows, cols, Kind::Plain);
    let x: Vec<f32> = (0..cols).map(|_| rng.unit() + 0.3 * rng.unit()).collect();
    fn err<E: Enc>(m: &E, x: &[f32], rows: usize, cols: usize) -> f64 {
        let mut out = vec![0.0; rows];
        m.run(&mut out, x, true);
        (0..rows)
            .map(|r| {
                let w: Vec<f64> = (0..cols).map(|c| m.w(r, c, cols).unwrap()).collect();
                let (want, mag) = dot64(w.iter().copied(), x.iter().map(|&v| v as f64));
                (out[r] as f64 - want).abs() / mag
            })
            .fold(0.0f64, f64::max)
    }
    let (e8, e4) = (err(&q8, &x, rows, cols), err(&q4, &x, rows, cols));
    println!("int8 activations, max error / sum|w x|: q8_0 {e8:.2e}, q4_0 {e4:.2e}");
    assert!(
        e8 < 0.5 / 127.0 && e4 < 0.5 / 127.0,
        "q8_0 {e8:e}, q4_0 {e4:e}"
    );
}
