//! `--features kernel-check`: the target's `matvec_q8` (on thumbv7em the ARMv7E-M DSP
//! path, `SXTB16` + `SMLAD` in inline `asm!`, which cannot run on the host) against
//! `matvec_q8::scalar`, bit for bit, on [`CASES`] random cases: rows 1..=9 (4-row passes
//! and every remainder), 1..=10 groups (past a block of 8), all i8 weights (-128
//! included), f16 scales (some zero), activations with zero, tiny, huge and infinite
//! groups, quantised by the target's `quantize_act` (checked against its scalar
//! reference too). Also `matvec_q4` and the element-wise kernels against their scalar
//! references (the same code on thumb, so they must be identical too). Prints
//! `kernel check: <n> cases, <m> mismatches`.
use folio_firmware::LineBuf;
use folio_kernels::{self as k, f16};

/// Random cases checked.
pub const CASES: u32 = 400;
const MAX_ROWS: usize = 9;
const MAX_COLS: usize = 320;

static mut Q: [i8; MAX_ROWS * MAX_COLS] = [0; MAX_ROWS * MAX_COLS];
static mut S: [f16; MAX_ROWS * MAX_COLS / 32] = [f16::ZERO; MAX_ROWS * MAX_COLS / 32];

/// xorshift32.
struct Rng(u32);
impl Rng {
    fn next(&mut self) -> u32 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.0 = x;
        x
    }
    fn below(&mut self, n: u32) -> u32 {
        self.next() % n
    }
    /// Uniform in [-1, 1).
    fn unit(&mut self) -> f32 {
        (self.next() >> 8) as f32 / (1u32 << 23) as f32 - 1.0
    }
}

/// Runs the check; returns the exit code (0 all identical, 8 on any mismatch).
pub fn run<F: FnMut(&[u8])>(out: &mut LineBuf<128, F>) -> u32 {
    // SAFETY: only this function touches these statics, once, with no interrupts.
    let (q, s) = unsafe {
        (
            &mut *core::ptr::addr_of_mut!(Q),
            &mut *core::ptr::addr_of_mut!(S),
        )
    };
    let mut rng = Rng(0x1234_5678);
    let mut bad = 0u64;
    let mut x = [0.0f32; MAX_COLS];
    let (mut xq, mut xq2) = ([0i8; MAX_COLS], [0i8; MAX_COLS]);
    let (mut xs, mut xs2) = ([0.0f32; MAX_COLS / 32], [0.0f32; MAX_COLS / 32]);
    let (mut a, mut b) = ([0.0f32; MAX_ROWS], [0.0f32; MAX_ROWS]);
    for case in 0..CASES {
        let rows = 1 + rng.below(MAX_ROWS as u32) as usize;
        let groups = 1 + rng.below((MAX_COLS / 32) as u32) as usize;
        let cols = 32 * groups;
        for v in q[..rows * cols].iter_mut() {
            *v = rng.next() as u8 as i8;
        }
        for v in s[..rows * groups].iter_mut() {
            *v = if rng.below(16) == 0 {
                f16::ZERO
            } else {
                f16::from_f32(rng.unit() * 0.05)
            };
        }
        for g in x[..cols].chunks_exact_mut(32) {
            let kind = rng.below(16);
            let mag = match kind {
                0 => 0.0,
                1 => 1e-35,
                2 => 1e35,
                _ => 1.0 + rng.below(100) as f32,
            };
            for v in g.iter_mut() {
                *v = rng.unit() * mag;
            }
            if kind == 3 && case % 7 == 0 {
                g[rng.below(32) as usize] = f32::INFINITY;
            }
        }
        let (x, q, s) = (&x[..cols], &q[..rows * cols], &s[..rows * groups]);
        let (xq, xs) = (&mut xq[..cols], &mut xs[..groups]);
        k::quantize_act(xq, xs, x);
        k::quantize_act::scalar::quantize_act(&mut xq2[..cols], &mut xs2[..groups], x);
        bad += xq.iter().zip(&xq2[..cols]).filter(|(a, b)| a != b).count() as u64;
        bad += mismatches(xs, &xs2[..groups]);
        let (xq, xs) = (&*xq, &*xs);
        k::matvec_q8(&mut a[..rows], q, s, xq, xs);
        k::matvec_q8::scalar::matvec_q8(&mut b[..rows], q, s, xq, xs);
        bad += mismatches(&a[..rows], &b[..rows]);
        let q4 = bytes(&q[..rows * cols / 2]);
        k::matvec_q4(&mut a[..rows], q4, s, xq, xs);
        k::matvec_q4::scalar::matvec_q4(&mut b[..rows], q4, s, xq, xs);
        bad += mismatches(&a[..rows], &b[..rows]);
        let mut y = [0.0f32; 65];
        let mut z = [0.0f32; 65];
        for (v, w) in y.iter_mut().zip(z.iter_mut()) {
            *v = rng.unit() * 4.0;
            *w = *v;
        }
        k::gelu_tanh(&mut y);
        k::gelu::scalar::gelu_tanh(&mut z);
        bad += mismatches(&y, &z);
        k::softmax(&mut y);
        k::softmax::scalar::softmax(&mut z);
        bad += mismatches(&y, &z);
    }
    out.put(b"kernel check: ");
    out.put_u64(u64::from(CASES));
    out.line_u64(
        b" cases (matvec_q8 path vs scalar, bit for bit), mismatches: ",
        bad,
    );
    out.flush();
    if bad == 0 {
        0
    } else {
        8
    }
}

/// Elements whose bits differ (any two NaNs count as equal).
fn mismatches(a: &[f32], b: &[f32]) -> u64 {
    a.iter()
        .zip(b)
        .filter(|(a, b)| a.to_bits() != b.to_bits() && !(a.is_nan() && b.is_nan()))
        .count() as u64
}

fn bytes(q: &[i8]) -> &[u8] {
    // SAFETY: i8 and u8 have the same size, alignment and validity.
    unsafe { core::slice::from_raw_parts(q.as_ptr().cast(), q.len()) }
}
