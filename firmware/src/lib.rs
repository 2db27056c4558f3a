//! Pure helpers of the folio firmware, kept apart from the board code so they are
//! tested on the host (`cargo test --lib --target x86_64-unknown-linux-gnu`).
//!
//! The firmware prints `key=value` lines without `core::fmt`: integers go through
//! [`fmt_u64`], byte strings through [`LineBuf::put_hex`], and [`LineBuf`] hands whole
//! lines to a sink (one semihosting call per line rather than one per byte). Nothing
//! here divides a `u64`: on thumb that links compiler-builtins' 64-bit division (about
//! 900 B of flash).
#![no_std]
#![deny(missing_docs)]

/// Longest decimal `u64`: 18446744073709551615.
pub const U64_DIGITS: usize = 20;

/// Writes `n` in decimal into the start of `buf` and returns the digits written.
///
/// Each digit counts subtractions of its power of ten (at most 9), so no division.
pub fn fmt_u64(buf: &mut [u8; U64_DIGITS], mut n: u64) -> &[u8] {
    // pow[0..=top]: 1, 10, ..., the largest power of ten not above `n` (1 for 0).
    let mut pow = [1u64; U64_DIGITS];
    let mut top = 0;
    while top + 1 < U64_DIGITS && pow[top] * 10 <= n {
        pow[top + 1] = pow[top] * 10;
        top += 1;
    }
    for (digit, &p) in buf.iter_mut().zip(pow[..=top].iter().rev()) {
        *digit = b'0';
        while n >= p {
            n -= p;
            *digit += 1;
        }
    }
    &buf[..=top]
}

/// Mean instructions per item over `n` items that took `ticks` ticks of a clock with
/// `per_tick` instructions per tick: `floor(ticks * per_tick / n)` in 32-bit
/// arithmetic (hardware division on ARMv7-M), for `ticks < 2^32`; more saturates.
pub fn instructions_per(ticks: u64, per_tick: u32, n: u32) -> u64 {
    let t = u32::try_from(ticks).unwrap_or(u32::MAX);
    let n = n.max(1);
    // t * per_tick / n == (t / n) * per_tick + (t % n) * per_tick / n, exactly.
    u64::from(t / n) * u64::from(per_tick) + u64::from((t % n).saturating_mul(per_tick) / n)
}

/// Lower-case hexadecimal digits.
const HEX: &[u8; 16] = b"0123456789abcdef";

/// A line buffer in front of a byte sink: bytes collect until a `\n` or until the
/// buffer is full, then go to the sink in one call.
pub struct LineBuf<const N: usize, F: FnMut(&[u8])> {
    buf: [u8; N],
    len: usize,
    sink: F,
}

impl<const N: usize, F: FnMut(&[u8])> LineBuf<N, F> {
    /// An empty buffer in front of `sink`.
    pub const fn new(sink: F) -> Self {
        Self {
            buf: [0; N],
            len: 0,
            sink,
        }
    }

    /// Appends one byte, flushing at `\n` and whenever the buffer fills.
    fn push(&mut self, b: u8) {
        if self.len == N {
            self.flush();
        }
        if let Some(slot) = self.buf.get_mut(self.len) {
            *slot = b;
            self.len += 1;
        }
        if b == b'\n' {
            self.flush();
        }
    }

    /// Appends bytes, flushing at each `\n` and whenever the buffer fills.
    pub fn put(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.push(b);
        }
    }

    /// Appends `n` in decimal.
    pub fn put_u64(&mut self, n: u64) {
        let mut digits = [0; U64_DIGITS];
        self.put(fmt_u64(&mut digits, n));
    }

    /// Appends `label`, `n` in decimal and a newline: `instructions per token: 1234\n`.
    pub fn line_u64(&mut self, label: &[u8], n: u64) {
        self.put(label);
        self.put_u64(n);
        self.put(b"\n");
    }

    /// Appends `key=value\n`.
    pub fn kv(&mut self, key: &[u8], value: &[u8]) {
        self.put(key);
        self.put(b"=");
        self.put(value);
        self.put(b"\n");
    }

    /// Appends `key=<n in decimal>\n`.
    pub fn kv_u64(&mut self, key: &[u8], n: u64) {
        let mut digits = [0; U64_DIGITS];
        self.kv(key, fmt_u64(&mut digits, n));
    }

    /// Appends `bytes` in lower-case hex, two digits a byte: any bytes, newlines
    /// included, fit on one `key=value` line.
    pub fn put_hex(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.push(HEX[usize::from(b >> 4)]);
            self.push(HEX[usize::from(b & 15)]);
        }
    }

    /// Hands the buffered bytes, if any, to the sink.
    pub fn flush(&mut self) {
        if self.len > 0 {
            (self.sink)(self.buf.get(..self.len).unwrap_or_default());
            self.len = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::format;
    use std::string::{String, ToString};
    use std::vec::Vec;

    #[test]
    fn fmt_u64_matches_core_fmt() {
        let mut cases: Vec<u64> = (0..=1001).collect();
        let mut p = 1u64;
        while let Some(q) = p.checked_mul(10) {
            cases.extend([p - 1, p, p + 1, 9 * p, q - 1]);
            p = q;
        }
        cases.extend([p - 1, p, p + 1, u32::MAX as u64, u64::MAX - 1, u64::MAX]);
        for n in cases {
            let mut buf = [0; U64_DIGITS];
            assert_eq!(fmt_u64(&mut buf, n), n.to_string().as_bytes(), "{n}");
        }
    }

    #[test]
    fn instructions_per_is_the_exact_floor() {
        for ticks in [
            0u64,
            1,
            39,
            199,
            200,
            201,
            52_429,
            5_336_935,
            125_000_017,
            1 << 31,
        ] {
            for per_tick in [1u32, 40, 80] {
                for n in [1u32, 4, 200] {
                    let exact = u128::from(ticks) * u128::from(per_tick) / u128::from(n);
                    assert_eq!(
                        u128::from(instructions_per(ticks, per_tick, n)),
                        exact,
                        "{ticks} {per_tick} {n}"
                    );
                }
            }
        }
        let top = u64::from(u32::MAX) * 40;
        assert_eq!(instructions_per(1 << 40, 40, 1), top, "saturates");
    }

    #[test]
    fn line_buf_flushes_lines_and_full_buffers() {
        let mut calls: Vec<Vec<u8>> = Vec::new();
        {
            let mut out = LineBuf::<8, _>::new(|b: &[u8]| calls.push(b.to_vec()));
            out.put(b"ab\ncdefghijk");
            out.line_u64(b"n=", 42);
            out.kv_u64(b"k", 7);
            out.put(b"tail");
            out.flush();
            out.flush();
        }
        let calls: Vec<String> = calls
            .into_iter()
            .map(|c| String::from_utf8(c).unwrap())
            .collect();
        assert_eq!(calls, ["ab\n", "cdefghij", "kn=42\n", "k=7\n", "tail"]);
    }

    #[test]
    fn put_hex_writes_every_byte_as_two_digits() {
        let bytes: Vec<u8> = (0..=255).collect();
        let mut lines: Vec<u8> = Vec::new();
        {
            let mut out = LineBuf::<16, _>::new(|b: &[u8]| lines.extend_from_slice(b));
            out.put(b"text=");
            out.put_hex(&bytes);
            out.put(b"\nempty=");
            out.put_hex(b"");
            out.put(b"\n");
        }
        let want: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            String::from_utf8(lines).unwrap(),
            format!("text={want}\nempty=\n")
        );
    }
}
