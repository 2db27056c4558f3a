//! Pure helpers of the folio firmware, kept apart from the board code so they are
//! tested on the host (`cargo test --lib --target x86_64-unknown-linux-gnu`).
//!
//! The firmware prints without `core::fmt`: integers go through [`fmt_u64`] into a byte
//! buffer and text through [`LineBuf`], which hands whole lines to a sink (one semihosting
//! call per line rather than one per byte).
#![no_std]
#![deny(missing_docs)]

/// Longest decimal `u64`: 18446744073709551615.
pub const U64_DIGITS: usize = 20;

/// Writes `n` in decimal into the end of `buf` and returns the digits written.
pub fn fmt_u64(buf: &mut [u8; U64_DIGITS], mut n: u64) -> &[u8] {
    let mut i = U64_DIGITS;
    loop {
        i -= 1;
        // `n % 10 < 10`, so the cast cannot truncate.
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &buf[i..]
}

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

    /// Appends bytes, flushing at each `\n` and whenever the buffer fills.
    pub fn put(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if self.len == N {
                self.flush();
            }
            self.buf[self.len] = b;
            self.len += 1;
            if b == b'\n' {
                self.flush();
            }
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

    /// Hands the buffered bytes, if any, to the sink.
    pub fn flush(&mut self) {
        if self.len > 0 {
            (self.sink)(&self.buf[..self.len]);
            self.len = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::string::{String, ToString};
    use std::vec::Vec;

    #[test]
    fn fmt_u64_matches_core_fmt() {
        let mut cases: Vec<u64> = (0..=1001).collect();
        let mut p = 1u64;
        while let Some(q) = p.checked_mul(10) {
            cases.extend([p - 1, p, p + 1, q - 1]);
            p = q;
        }
        cases.extend([u32::MAX as u64, u64::MAX - 1, u64::MAX]);
        for n in cases {
            let mut buf = [0; U64_DIGITS];
            assert_eq!(fmt_u64(&mut buf, n), n.to_string().as_bytes(), "{n}");
        }
    }

    #[test]
    fn line_buf_flushes_lines_and_full_buffers() {
        let mut calls: Vec<Vec<u8>> = Vec::new();
        {
            let mut out = LineBuf::<8, _>::new(|b: &[u8]| calls.push(b.to_vec()));
            out.put(b"ab\ncdefghijk");
            out.line_u64(b"n=", 42);
            out.put(b"tail");
            out.flush();
            out.flush();
        }
        let calls: Vec<String> = calls
            .into_iter()
            .map(|c| String::from_utf8(c).unwrap())
            .collect();
        assert_eq!(calls, ["ab\n", "cdefghij", "kn=42\n", "tail"]);
    }
}
