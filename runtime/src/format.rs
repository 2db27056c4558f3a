//! Stage 1: file bytes → header JSON → tensor entries and metadata strings.
//!
//! A safetensors file is `u64` LE header length `N`, `N` bytes of JSON, then the data
//! buffer. This module holds a small streaming JSON reader that needs no allocation:
//!
//! - [`Entries`] walks the top-level header object and yields each tensor's
//!   [`TensorInfo`] (raw name span, dtype, shape, data offsets) and the `__metadata__` object.
//! - Metadata values are JSON strings; `folio.config` and `folio.vocab` hold JSON *inside*
//!   those strings. [`Unescape`] decodes a raw (still escaped) string as a `char` iterator,
//!   and the same reader then parses the decoded characters on the fly.
//! - Numbers are read by a decimal parser of our own ([`parse_decimal`]): integers exactly,
//!   and floats through `mantissa * 10^exp` in 64-bit integer arithmetic (core's
//!   `f64::from_str` costs ~15 KB of flash on Cortex-M, soft-float f64 ~2 KB).
//!
//! Nesting in skipped values is limited to [`MAX_DEPTH`] levels; the reader never recurses.
use crate::error::{Dtype, Error};

/// Deepest nesting of arrays/objects the reader accepts in values it skips.
pub const MAX_DEPTH: u32 = 64;
/// Longest object key or tensor name (UTF-8 bytes, after unescaping) the reader compares;
/// longer names are treated as unknown (an unknown tensor is ignored).
pub const MAX_NAME: usize = 96;
/// Dimensions of a tensor shape that are stored for display; more are counted, not kept.
pub const MAX_RANK: usize = 4;

/// Split a file into its header (validated UTF-8) and data buffer.
pub fn split(bytes: &[u8]) -> Result<(&str, &[u8], usize), Error> {
    let Some(prefix) = bytes.get(..8) else {
        return Err(Error::TooShort { len: bytes.len() });
    };
    let mut len8 = [0u8; 8];
    len8.copy_from_slice(prefix);
    let header_len = u64::from_le_bytes(len8);
    let too_long = Error::HeaderTooLong {
        header_len,
        file_len: bytes.len(),
    };
    let n = usize::try_from(header_len).map_err(|_| too_long)?;
    let end = n.checked_add(8).ok_or(too_long)?;
    let (Some(head), Some(data)) = (bytes.get(8..end), bytes.get(end..)) else {
        return Err(too_long);
    };
    let header = core::str::from_utf8(head).map_err(|_| Error::HeaderNotUtf8)?;
    Ok((header, data, end))
}

// ---------------------------------------------------------------------------------------
// Escapes

fn hex4(next: &mut impl FnMut() -> Option<char>) -> Option<u32> {
    let mut v = 0u32;
    for _ in 0..4 {
        v = v * 16 + next()?.to_digit(16)?;
    }
    Some(v)
}

/// Decode one escape after its backslash; `None` if it is not valid JSON (lone surrogates
/// included, since they are no `char`).
fn escape(next: &mut impl FnMut() -> Option<char>) -> Option<char> {
    Some(match next()? {
        '"' => '"',
        '\\' => '\\',
        '/' => '/',
        'b' => '\u{8}',
        'f' => '\u{c}',
        'n' => '\n',
        'r' => '\r',
        't' => '\t',
        'u' => {
            let hi = hex4(next)?;
            if (0xD800..0xDC00).contains(&hi) {
                if next()? != '\\' || next()? != 'u' {
                    return None;
                }
                let lo = hex4(next)?;
                if !(0xDC00..0xE000).contains(&lo) {
                    return None;
                }
                char::from_u32(0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00))?
            } else {
                char::from_u32(hi)?
            }
        }
        _ => return None,
    })
}

/// The characters of a raw JSON string body (between the quotes, escapes still in place).
///
/// Bodies handed out by this crate were validated when the header was read, so the iterator
/// simply stops at anything malformed.
#[derive(Clone, Debug)]
pub struct Unescape<'a> {
    chars: core::str::Chars<'a>,
}

/// Decode a raw JSON string body (as returned by [`crate::Model::metadata`]).
pub fn unescape(raw: &str) -> Unescape<'_> {
    Unescape { chars: raw.chars() }
}

impl Iterator for Unescape<'_> {
    type Item = char;
    fn next(&mut self) -> Option<char> {
        let c = self.chars.next()?;
        if c == '\\' {
            let chars = &mut self.chars;
            escape(&mut || chars.next())
        } else {
            Some(c)
        }
    }
}

/// True when the decoded `raw` equals `lit`.
pub fn raw_eq(raw: &str, lit: &str) -> bool {
    unescape(raw).eq(lit.chars())
}

// ---------------------------------------------------------------------------------------
// Sources: the header text itself, or the decoded characters of a string value.

/// A character source with one character of look-ahead.
pub(crate) trait Source {
    fn peek(&self) -> Option<char>;
    fn bump(&mut self);
    /// Position for error messages (bytes for [`StrSource`], characters for [`EscSource`]).
    fn offset(&self) -> usize;
}

/// The header text; offsets are byte positions, so spans can be sliced back out.
pub(crate) struct StrSource<'a> {
    s: &'a str,
    pos: usize,
}

impl Source for StrSource<'_> {
    fn peek(&self) -> Option<char> {
        self.s.get(self.pos..)?.chars().next()
    }
    fn bump(&mut self) {
        if let Some(c) = self.peek() {
            self.pos += c.len_utf8();
        }
    }
    fn offset(&self) -> usize {
        self.pos
    }
}

/// The decoded characters of a raw string body.
pub(crate) struct EscSource<'a> {
    it: Unescape<'a>,
    cur: Option<char>,
    count: usize,
}

impl<'a> EscSource<'a> {
    pub(crate) fn new(raw: &'a str) -> Self {
        let mut it = unescape(raw);
        let cur = it.next();
        EscSource { it, cur, count: 0 }
    }
}

impl Source for EscSource<'_> {
    fn peek(&self) -> Option<char> {
        self.cur
    }
    fn bump(&mut self) {
        if self.cur.is_some() {
            self.cur = self.it.next();
            self.count += 1;
        }
    }
    fn offset(&self) -> usize {
        self.count
    }
}

// ---------------------------------------------------------------------------------------
// Numbers

/// A JSON number as read: `(-1)^neg * mant * 10^exp`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Decimal {
    /// Sign.
    pub neg: bool,
    /// Significant digits (at most 19; further digits are dropped, see `exact`).
    pub mant: u64,
    /// Power of ten.
    pub exp: i32,
    /// No fraction and no exponent part was written.
    pub integer: bool,
    /// No digit was dropped.
    pub exact: bool,
}

impl Decimal {
    /// The value as an unsigned integer, if it was written as one and fits.
    pub fn as_u64(&self) -> Option<u64> {
        (!self.neg && self.integer && self.exact && self.exp == 0).then_some(self.mant)
    }

    /// The value rounded to f32 (within an ulp of correct rounding; ±inf on overflow).
    ///
    /// Integer arithmetic only (no f64: soft-float f64 costs ~2 KB of flash on Cortex-M):
    /// the value is held as `m * 2^e` with a 64-bit `m` kept normalised to its top bit,
    /// multiplied or divided by 10 once per decimal exponent step (each step truncates
    /// below bit 2^-60 of `m`, far below f32's 24 bits), then `m` is rounded to f32 once
    /// and scaled by `2^e` exactly (a subnormal result rounds a second time).
    pub fn as_f32(&self) -> f32 {
        if self.mant == 0 {
            return if self.neg { -0.0 } else { 0.0 };
        }
        // mant < 2^64 < 10^20: 10^exp above 10^39 overflows f32, below 10^-66 underflows.
        let v = if self.exp > 39 {
            f32::INFINITY
        } else if self.exp < -66 {
            0.0
        } else {
            let mut e: i32 = 0;
            let mut m = self.mant;
            let norm = |m: &mut u64, e: &mut i32| {
                let z = m.leading_zeros();
                *m <<= z;
                *e -= z as i32;
            };
            norm(&mut m, &mut e);
            for _ in 0..self.exp.max(0) {
                // m * 10 = (m >> 4) * 10 * 2^4, which fits: (2^60) * 10 < 2^64.
                m = (m >> 4) * 10;
                e += 4;
                norm(&mut m, &mut e);
            }
            for _ in 0..(-self.exp).max(0) {
                m /= 10;
                norm(&mut m, &mut e);
            }
            // Keep 32 bits (f32 needs 24 + rounding): a u32 -> f32 conversion is one
            // instruction on an FPU, and `m` is normalised, so the top bit is set.
            let sticky = u64::from(m << 32 != 0);
            let hi = ((m >> 32) | sticky) as u32;
            ldexp(hi as f32, e + 32)
        };
        if self.neg {
            -v
        } else {
            v
        }
    }
}

/// `v * 2^e` for a positive normal `v`, by exact power-of-two steps (one rounding at
/// most, in the subnormal range).
fn ldexp(mut v: f32, mut e: i32) -> f32 {
    let p = |k: i32| f32::from_bits(((k + 127) as u32) << 23);
    while e > 127 {
        v *= p(127);
        e -= 127;
        if v.is_infinite() {
            return v;
        }
    }
    while e < -126 {
        v *= p(-126);
        e += 126;
        if v == 0.0 {
            return v;
        }
    }
    v * p(e)
}

/// Parse a whole string as a JSON number (the decimal parser used for `layer_norm_eps`).
pub fn parse_decimal(s: &str) -> Option<Decimal> {
    let mut r = Reader {
        src: StrSource { s, pos: 0 },
    };
    let d = r.number().ok()?;
    r.src.peek().is_none().then_some(d)
}

// ---------------------------------------------------------------------------------------
// The reader

/// Error of the reader: the offset where it stopped.
pub(crate) type JResult<T> = Result<T, usize>;

/// A decoded object key or name, kept in a small buffer.
pub(crate) struct NameBuf {
    buf: [u8; MAX_NAME],
    len: usize,
    overflow: bool,
}

impl NameBuf {
    pub(crate) const fn new() -> Self {
        NameBuf {
            buf: [0; MAX_NAME],
            len: 0,
            overflow: false,
        }
    }
    pub(crate) fn push(&mut self, c: char) {
        let mut tmp = [0u8; 4];
        let enc = c.encode_utf8(&mut tmp).as_bytes();
        match self.buf.get_mut(self.len..self.len + enc.len()) {
            Some(dst) if !self.overflow => {
                dst.copy_from_slice(enc);
                self.len += enc.len();
            }
            _ => self.overflow = true,
        }
    }
    /// The name, or `None` if it was longer than [`MAX_NAME`].
    pub(crate) fn as_str(&self) -> Option<&str> {
        if self.overflow {
            return None;
        }
        core::str::from_utf8(self.buf.get(..self.len)?).ok()
    }
    /// Decode a raw string body into a fresh buffer.
    pub(crate) fn from_raw(raw: &str) -> Self {
        let mut b = NameBuf::new();
        for c in unescape(raw) {
            b.push(c);
        }
        b
    }
}

pub(crate) struct Reader<S> {
    pub(crate) src: S,
}

impl<S: Source> Reader<S> {
    pub(crate) fn new(src: S) -> Self {
        Reader { src }
    }

    pub(crate) fn offset(&self) -> usize {
        self.src.offset()
    }

    fn ws(&mut self) {
        while matches!(self.src.peek(), Some(' ' | '\t' | '\n' | '\r')) {
            self.src.bump();
        }
    }

    /// Next non-whitespace character, not consumed.
    pub(crate) fn peek(&mut self) -> Option<char> {
        self.ws();
        self.src.peek()
    }

    /// Consume `c` if it is the next non-whitespace character.
    pub(crate) fn eat(&mut self, c: char) -> bool {
        if self.peek() == Some(c) {
            self.src.bump();
            true
        } else {
            false
        }
    }

    pub(crate) fn expect(&mut self, c: char) -> JResult<()> {
        if self.eat(c) {
            Ok(())
        } else {
            Err(self.offset())
        }
    }

    /// True when only whitespace is left.
    pub(crate) fn at_end(&mut self) -> bool {
        self.peek().is_none()
    }

    /// Read a string, handing each decoded character to `f`.
    pub(crate) fn string(&mut self, mut f: impl FnMut(char)) -> JResult<()> {
        self.expect('"')?;
        loop {
            let at = self.offset();
            let c = self.src.peek().ok_or(at)?;
            self.src.bump();
            match c {
                '"' => return Ok(()),
                '\\' => {
                    let src = &mut self.src;
                    let ch = escape(&mut || {
                        let c = src.peek();
                        src.bump();
                        c
                    })
                    .ok_or(at)?;
                    f(ch);
                }
                c if (c as u32) < 0x20 => return Err(at),
                c => f(c),
            }
        }
    }

    /// Read a string and return its decoded length in chars and its first char.
    pub(crate) fn string_one(&mut self) -> JResult<(usize, Option<char>)> {
        let mut n = 0usize;
        let mut first = None;
        self.string(|c| {
            if n == 0 {
                first = Some(c);
            }
            n += 1;
        })?;
        Ok((n, first))
    }

    /// Read a string and report whether it decodes to `lit`.
    pub(crate) fn string_eq(&mut self, lit: &str) -> JResult<bool> {
        let mut want = lit.chars();
        let mut same = true;
        self.string(|c| {
            if want.next() != Some(c) {
                same = false;
            }
        })?;
        Ok(same && want.next().is_none())
    }

    /// Read an object key and the `:` after it.
    pub(crate) fn key(&mut self) -> JResult<NameBuf> {
        let mut name = NameBuf::new();
        self.string(|c| name.push(c))?;
        self.expect(':')?;
        Ok(name)
    }

    fn digits(&mut self, mut f: impl FnMut(u32)) -> JResult<usize> {
        let mut n = 0;
        while let Some(d) = self.src.peek().and_then(|c| c.to_digit(10)) {
            f(d);
            self.src.bump();
            n += 1;
        }
        if n == 0 {
            Err(self.offset())
        } else {
            Ok(n)
        }
    }

    /// Read a JSON number (strict grammar: no leading zeros, no `+`, no bare `.`).
    pub(crate) fn number(&mut self) -> JResult<Decimal> {
        self.ws();
        let mut d = Decimal {
            neg: false,
            mant: 0,
            exp: 0,
            integer: true,
            exact: true,
        };
        if self.src.peek() == Some('-') {
            d.neg = true;
            self.src.bump();
        }
        let start = self.offset();
        let mut first = None;
        let push = |d: &mut Decimal, v: u32, frac: bool| {
            if let Some(m) = d
                .exact
                .then_some(d.mant)
                .and_then(|m| m.checked_mul(10))
                .and_then(|m| m.checked_add(u64::from(v)))
            {
                d.mant = m;
                if frac {
                    d.exp -= 1;
                }
            } else {
                d.exact = false;
                if !frac {
                    d.exp = d.exp.saturating_add(1);
                }
            }
        };
        let n = self.digits(|v| {
            if first.is_none() {
                first = Some(v);
            }
            push(&mut d, v, false);
        })?;
        if first == Some(0) && n > 1 {
            return Err(start);
        }
        if self.src.peek() == Some('.') {
            self.src.bump();
            d.integer = false;
            self.digits(|v| push(&mut d, v, true))?;
        }
        if matches!(self.src.peek(), Some('e' | 'E')) {
            self.src.bump();
            d.integer = false;
            let mut eneg = false;
            match self.src.peek() {
                Some('-') => {
                    eneg = true;
                    self.src.bump();
                }
                Some('+') => self.src.bump(),
                _ => {}
            }
            let mut e: i32 = 0;
            self.digits(|v| e = e.saturating_mul(10).saturating_add(v as i32))?;
            d.exp = if eneg {
                d.exp.saturating_sub(e)
            } else {
                d.exp.saturating_add(e)
            };
        }
        Ok(d)
    }

    /// Read `true` or `false`.
    pub(crate) fn boolean(&mut self) -> JResult<bool> {
        match self.peek() {
            Some('t') => self.literal("true").map(|_| true),
            Some('f') => self.literal("false").map(|_| false),
            _ => Err(self.offset()),
        }
    }

    fn literal(&mut self, word: &str) -> JResult<()> {
        self.ws();
        for w in word.chars() {
            if self.src.peek() != Some(w) {
                return Err(self.offset());
            }
            self.src.bump();
        }
        Ok(())
    }

    /// Skip one value of any type, validating it. Iterative: nesting is tracked in a bit
    /// stack (1 = object, 0 = array) of [`MAX_DEPTH`] levels.
    pub(crate) fn skip_value(&mut self) -> JResult<()> {
        let mut stack: u64 = 0;
        let mut depth: u32 = 0;
        loop {
            // Expecting a value.
            let mut opened = false;
            match self.peek() {
                Some('{') => {
                    self.src.bump();
                    if !self.eat('}') {
                        if depth >= MAX_DEPTH {
                            return Err(self.offset());
                        }
                        stack = (stack << 1) | 1;
                        depth += 1;
                        self.key()?;
                        opened = true;
                    }
                }
                Some('[') => {
                    self.src.bump();
                    if !self.eat(']') {
                        if depth >= MAX_DEPTH {
                            return Err(self.offset());
                        }
                        stack <<= 1;
                        depth += 1;
                        opened = true;
                    }
                }
                Some('"') => self.string(|_| ())?,
                Some('t') => self.literal("true")?,
                Some('f') => self.literal("false")?,
                Some('n') => self.literal("null")?,
                Some('-' | '0'..='9') => {
                    self.number()?;
                }
                _ => return Err(self.offset()),
            }
            if opened {
                continue;
            }
            // After a value: close containers until one continues with a comma.
            loop {
                if depth == 0 {
                    return Ok(());
                }
                let in_object = stack & 1 == 1;
                if self.eat(',') {
                    if in_object {
                        self.key()?;
                    }
                    break;
                }
                let close = if in_object { '}' } else { ']' };
                self.expect(close)?;
                stack >>= 1;
                depth -= 1;
            }
        }
    }

    /// Read an object, calling `member(self, key)` after each key and its `:`; `member`
    /// must consume the value.
    pub(crate) fn object(
        &mut self,
        mut member: impl FnMut(&mut Self, NameBuf) -> JResult<()>,
    ) -> JResult<()> {
        self.expect('{')?;
        if self.eat('}') {
            return Ok(());
        }
        loop {
            let key = self.key()?;
            member(self, key)?;
            if !self.eat(',') {
                return self.expect('}');
            }
        }
    }

    /// Read an array, calling `element(self, index)` for each element (which it must consume).
    pub(crate) fn array(
        &mut self,
        mut element: impl FnMut(&mut Self, usize) -> JResult<()>,
    ) -> JResult<()> {
        self.expect('[')?;
        if self.eat(']') {
            return Ok(());
        }
        let mut i = 0;
        loop {
            element(self, i)?;
            i += 1;
            if !self.eat(',') {
                return self.expect(']');
            }
        }
    }
}

impl<'a> Reader<StrSource<'a>> {
    /// Read a string and return its raw body (escapes in place) as a slice of the header.
    fn raw_string(&mut self) -> JResult<&'a str> {
        self.ws();
        let start = self.offset() + 1;
        self.string(|_| ())?;
        let end = self.offset() - 1;
        self.src.s.get(start..end).ok_or(start)
    }
}

// ---------------------------------------------------------------------------------------
// The header

/// One tensor entry of the header.
#[derive(Clone, Copy, Debug)]
pub struct TensorInfo<'a> {
    /// Raw (still escaped) name; decode with [`unescape`] or [`TensorInfo::name`].
    pub name_raw: &'a str,
    /// Element type.
    pub dtype: Dtype,
    /// Number of dimensions.
    pub rank: usize,
    /// The first [`MAX_RANK`] dimensions.
    pub dims: [u64; MAX_RANK],
    /// Element count (`None` if it overflows u64).
    pub numel: Option<u64>,
    /// `data_offsets[0]`, from the start of the data buffer.
    pub begin: u64,
    /// `data_offsets[1]`.
    pub end: u64,
    /// Byte offset of the entry in the header (for error messages).
    pub offset: usize,
}

impl<'a> TensorInfo<'a> {
    /// The decoded name.
    pub fn name(&self) -> Unescape<'a> {
        unescape(self.name_raw)
    }
    /// The stored dimensions (all of them when `rank <= MAX_RANK`).
    pub fn shape(&self) -> &[u64] {
        self.dims.get(..self.rank.min(MAX_RANK)).unwrap_or(&[])
    }
    /// Bytes of data (`end - begin`, 0 if inverted).
    pub fn bytes(&self) -> u64 {
        self.end.saturating_sub(self.begin)
    }
    /// The tensor's role, if folio uses a tensor of this name.
    pub fn id(&self) -> Option<crate::error::TensorId> {
        crate::weights::tensor_id(NameBuf::from_raw(self.name_raw).as_str()?)
    }
}

/// An item of the header.
#[derive(Clone, Copy, Debug)]
pub enum Entry<'a> {
    /// The `__metadata__` object: its raw JSON text (an object of string values).
    Metadata(&'a str),
    /// A tensor.
    Tensor(TensorInfo<'a>),
}

/// Streaming walk over a safetensors header: each item once, in file order.
pub struct Entries<'a> {
    r: Reader<StrSource<'a>>,
    state: u8,
}

/// Walk `header` (the JSON text).
pub fn entries(header: &str) -> Entries<'_> {
    Entries {
        r: Reader::new(StrSource { s: header, pos: 0 }),
        state: 0,
    }
}

fn dtype_of(s: &str) -> Option<Dtype> {
    Some(match s {
        "BOOL" => Dtype::Bool,
        "U8" => Dtype::U8,
        "I8" => Dtype::I8,
        "F8_E5M2" => Dtype::F8E5M2,
        "F8_E4M3" => Dtype::F8E4M3,
        "I16" => Dtype::I16,
        "U16" => Dtype::U16,
        "F16" => Dtype::F16,
        "BF16" => Dtype::BF16,
        "I32" => Dtype::I32,
        "U32" => Dtype::U32,
        "F32" => Dtype::F32,
        "F64" => Dtype::F64,
        "I64" => Dtype::I64,
        "U64" => Dtype::U64,
        _ => return None,
    })
}

impl<'a> Entries<'a> {
    fn member(&mut self) -> Result<Entry<'a>, Error> {
        let bad = |offset| Error::BadJson { offset };
        let r = &mut self.r;
        r.peek();
        let at = r.offset();
        let name_raw = r.raw_string().map_err(bad)?;
        r.expect(':').map_err(bad)?;
        if raw_eq(name_raw, "__metadata__") {
            r.peek();
            let start = r.offset();
            r.object(|r, _| r.string(|_| ())).map_err(bad)?;
            let text = r.src.s.get(start..r.offset()).ok_or(bad(start))?;
            return Ok(Entry::Metadata(text));
        }
        let mut dtype = None;
        let mut shape = None;
        let mut offsets = None;
        let mut unknown_dtype = None;
        r.object(|r, key| {
            match key.as_str() {
                Some("dtype") => {
                    r.peek();
                    let at = r.offset();
                    let mut s = NameBuf::new();
                    r.string(|c| s.push(c))?;
                    dtype = s.as_str().and_then(dtype_of);
                    if dtype.is_none() {
                        unknown_dtype = Some(at);
                    }
                }
                Some("shape") => {
                    let mut dims = [0u64; MAX_RANK];
                    let mut numel = Some(1u64);
                    let mut rank = 0;
                    r.array(|r, i| {
                        let at = r.offset();
                        let v = r.number()?.as_u64().ok_or(at)?;
                        if let Some(d) = dims.get_mut(i) {
                            *d = v;
                        }
                        numel = numel.and_then(|n| n.checked_mul(v));
                        rank = i + 1;
                        Ok(())
                    })?;
                    shape = Some((rank, dims, numel));
                }
                Some("data_offsets") => {
                    let mut o = [0u64; 2];
                    let mut n = 0;
                    r.array(|r, i| {
                        let at = r.offset();
                        let v = r.number()?.as_u64().ok_or(at)?;
                        *o.get_mut(i).ok_or(at)? = v;
                        n = i + 1;
                        Ok(())
                    })?;
                    if n != 2 {
                        return Err(r.offset());
                    }
                    offsets = Some(o);
                }
                _ => r.skip_value()?,
            }
            Ok(())
        })
        .map_err(bad)?;
        if let Some(offset) = unknown_dtype {
            return Err(Error::UnknownDtype { offset });
        }
        let (Some(dtype), Some((rank, dims, numel)), Some([begin, end])) = (dtype, shape, offsets)
        else {
            return Err(bad(r.offset()));
        };
        Ok(Entry::Tensor(TensorInfo {
            name_raw,
            dtype,
            rank,
            dims,
            numel,
            begin,
            end,
            offset: at,
        }))
    }
}

impl<'a> Iterator for Entries<'a> {
    type Item = Result<Entry<'a>, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        let bad = |offset| Error::BadJson { offset };
        match self.state {
            0 => {
                if self.r.expect('{').is_err() {
                    self.state = 2;
                    return Some(Err(bad(self.r.offset())));
                }
                if self.r.eat('}') {
                    self.state = 2;
                    return (!self.r.at_end()).then(|| Err(bad(self.r.offset())));
                }
                self.state = 1;
            }
            1 => {}
            _ => return None,
        }
        let item = self.member();
        let item = item.and_then(|e| {
            if self.r.eat(',') {
                return Ok(e);
            }
            self.state = 2;
            if self.r.eat('}') && self.r.at_end() {
                Ok(e)
            } else {
                Err(bad(self.r.offset()))
            }
        });
        if item.is_err() {
            self.state = 2;
        }
        Some(item)
    }
}

/// The raw (still escaped) string value of `key` in a `__metadata__` object text.
pub fn metadata_in<'a>(meta: &'a str, key: &str) -> Option<&'a str> {
    let mut r = Reader::new(StrSource { s: meta, pos: 0 });
    let mut found = None;
    r.object(|r, k| {
        let v = r.raw_string()?;
        if found.is_none() && k.as_str() == Some(key) {
            found = Some(v);
        }
        Ok(())
    })
    .ok()?;
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::String;
    use std::vec::Vec;

    fn esc(raw: &str) -> String {
        unescape(raw).collect()
    }

    #[test]
    fn unescape_handles_every_escape() {
        assert_eq!(esc(r#"a\"b\\c\/d\n\t\r\b\f"#), "a\"b\\c/d\n\t\r\u{8}\u{c}");
        assert_eq!(esc(r"\u0041\u00e9\u20AC"), "Aé€");
        assert_eq!(esc(r"\ud83d\ude00!"), "😀!");
    }

    #[test]
    fn reader_rejects_bad_strings() {
        for bad in [
            r#""\x""#,
            r#""\ud800""#,
            r#""\udc00""#,
            "\"a\u{1}\"",
            r#""\u12""#,
            r#""abc"#,
        ] {
            let mut r = Reader::new(StrSource { s: bad, pos: 0 });
            assert!(r.string(|_| ()).is_err(), "{bad}");
        }
    }

    #[test]
    fn nested_json_inside_a_string() {
        // A metadata value holding an escaped JSON array of one-char strings.
        let raw = r#"[\"\\n\", \" \", \"\\u0041\", \"\\\"\"]"#;
        let mut r = Reader::new(EscSource::new(raw));
        let mut got = Vec::new();
        r.array(|r, _| {
            r.string(|c| got.push(c))?;
            Ok(())
        })
        .unwrap();
        assert_eq!(got, ['\n', ' ', 'A', '"']);
    }

    #[test]
    fn skip_value_validates_and_limits_depth() {
        let ok = r#" {"a": [1, -2.5e+3, true, false, null, {"b": {}}, []], "c": "x"} "#;
        let mut r = Reader::new(StrSource { s: ok, pos: 0 });
        r.skip_value().unwrap();
        assert!(r.at_end());
        for bad in [
            "[1,]",
            "{\"a\" 1}",
            "[01]",
            "{\"a\":1,}",
            "[1 2]",
            "nul",
            "[-]",
            "[1.]",
            "{1:2}",
        ] {
            let mut r = Reader::new(StrSource { s: bad, pos: 0 });
            assert!(r.skip_value().is_err() || !r.at_end(), "{bad}");
        }
        let deep: String = "[".repeat(10_000);
        let mut r = Reader::new(StrSource { s: &deep, pos: 0 });
        assert!(r.skip_value().is_err());
        let ok_deep = std::format!("{}{}", "[".repeat(64), "]".repeat(64));
        let mut r = Reader::new(StrSource {
            s: &ok_deep,
            pos: 0,
        });
        r.skip_value().unwrap();
    }

    #[test]
    fn decimal_parser_matches_std_within_an_ulp() {
        let cases = [
            "1e-5",
            "1e-05",
            "0.00001",
            "1E-5",
            "1e-6",
            "0.1",
            "3.14159",
            "-2.5",
            "0",
            "-0",
            "123456789",
            "1.5e10",
            "6.103515625e-05",
            "9.999999747378752e-06",
            "1e-12",
            "12345678901234567890123e-20",
            "0.000000000000000000000000000000000000001",
            "2e38",
        ];
        for s in cases {
            let got = parse_decimal(s).unwrap().as_f32();
            let want: f32 = s.parse().unwrap();
            let ulps = (got.to_bits() as i64 - want.to_bits() as i64).abs();
            assert!(ulps <= 1, "{s}: {got} vs {want}");
        }
        assert_eq!(parse_decimal("1e999").unwrap().as_f32(), f32::INFINITY);
        assert_eq!(parse_decimal("1e-999").unwrap().as_f32(), 0.0);
        for bad in ["", "-", "1.", ".5", "01", "1e", "+1", "1x", "0x10"] {
            assert!(parse_decimal(bad).is_none(), "{bad}");
        }
        assert_eq!(parse_decimal("64").unwrap().as_u64(), Some(64));
        assert_eq!(parse_decimal("64.0").unwrap().as_u64(), None);
        assert_eq!(parse_decimal("-1").unwrap().as_u64(), None);
        assert_eq!(
            parse_decimal("18446744073709551615").unwrap().as_u64(),
            Some(u64::MAX)
        );
        assert_eq!(
            parse_decimal("18446744073709551616").unwrap().as_u64(),
            None
        );
    }

    #[test]
    fn entries_walk_tensors_and_metadata() {
        let h = r#"{"t\u0031":{"shape":[2,3],"dtype":"F16","data_offsets":[0,12],"x":[{}]},
                    "__metadata__":{"k":"v\"w"} , "e":{"dtype":"I8","shape":[],"data_offsets":[12,13]}}   "#;
        let all: Vec<_> = entries(h).collect::<Result<_, _>>().unwrap();
        assert_eq!(all.len(), 3);
        let Entry::Tensor(t) = all[0] else { panic!() };
        assert_eq!(t.name().collect::<String>(), "t1");
        assert_eq!(
            (t.dtype, t.shape(), t.numel, t.begin, t.end),
            (Dtype::F16, &[2u64, 3][..], Some(6), 0, 12)
        );
        let Entry::Metadata(m) = all[1] else { panic!() };
        assert_eq!(metadata_in(m, "k"), Some(r#"v\"w"#));
        assert_eq!(metadata_in(m, "z"), None);
        let Entry::Tensor(e) = all[2] else { panic!() };
        assert_eq!((e.rank, e.numel), (0, Some(1)));
    }

    #[test]
    fn entries_report_errors() {
        type Case = (&'static str, fn(&Error) -> bool);
        let cases: [Case; 6] = [
            (r#"{"a":{"dtype":"F16","shape":[1]}}"#, |e| {
                matches!(e, Error::BadJson { .. })
            }),
            (
                r#"{"a":{"dtype":"Q3","shape":[1],"data_offsets":[0,2]}}"#,
                |e| matches!(e, Error::UnknownDtype { .. }),
            ),
            (
                r#"{"a":{"dtype":"F16","shape":[1],"data_offsets":[0,2,4]}}"#,
                |e| matches!(e, Error::BadJson { .. }),
            ),
            (r#"{"__metadata__":{"k":1}}"#, |e| {
                matches!(e, Error::BadJson { .. })
            }),
            (r#"{} x"#, |e| matches!(e, Error::BadJson { .. })),
            (r#"[]"#, |e| matches!(e, Error::BadJson { .. })),
        ];
        for (h, ok) in cases {
            let err = entries(h)
                .find_map(|e| e.err())
                .unwrap_or_else(|| panic!("{h}"));
            assert!(ok(&err), "{h}: {err:?}");
        }
        assert_eq!(entries("{}").count(), 0);
    }

    #[test]
    fn split_checks_lengths() {
        assert_eq!(split(&[1, 2, 3]), Err(Error::TooShort { len: 3 }));
        let mut f = Vec::from(100u64.to_le_bytes());
        f.extend_from_slice(b"{}");
        assert!(matches!(
            split(&f),
            Err(Error::HeaderTooLong {
                header_len: 100,
                ..
            })
        ));
        let mut f = Vec::from(u64::MAX.to_le_bytes());
        f.extend_from_slice(b"{}");
        assert!(matches!(split(&f), Err(Error::HeaderTooLong { .. })));
        let mut f = Vec::from(2u64.to_le_bytes());
        f.extend_from_slice(&[0xff, 0xfe, 1]);
        assert_eq!(split(&f), Err(Error::HeaderNotUtf8));
        let mut f = Vec::from(2u64.to_le_bytes());
        f.extend_from_slice(b"{}abc");
        assert_eq!(split(&f).unwrap(), ("{}", &b"abc"[..], 10));
    }
}
