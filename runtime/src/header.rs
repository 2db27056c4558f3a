//! Stage 1: file bytes → the safetensors header: tensor entries and `__metadata__` strings.
//!
//! A safetensors file is a `u64` LE header length `N`, `N` bytes of JSON, then the data
//! section. [`Header::parse`] reads the JSON once with a small reader that neither
//! recurses nor allocates. It accepts the JSON the safetensors crate writes (any
//! whitespace, escapes and key order): an object of tensor entries, each exactly
//! `dtype`, `shape` and `data_offsets`, and at most one `__metadata__` object of strings.
//! It checks the dtypes, the capacities and that no key appears twice in any object.
//! Entries and metadata values are then read back from the text on demand; strings stay
//! raw (escapes in place) and [`unescape`] decodes them.
use crate::error::Error;
use crate::names::{Dtype, MetaKey};
use core::str::Chars;

/// Dimensions of a tensor shape that are stored; more are counted, not kept.
pub const MAX_RANK: usize = 4;
/// Most tensors a header may list (used or not): duplicate names are looked for pairwise.
pub const MAX_TENSORS: usize = 512;
/// Most `__metadata__` keys.
pub const MAX_METADATA: usize = 64;
/// Longest tensor name or metadata key, in bytes as written (values are not limited).
pub const MAX_KEY: usize = 256;
/// The key of the metadata object.
const META: &str = "__metadata__";

// ---------------------------------------------------------------------------------------
// Strings

fn hex4(chars: &mut Chars<'_>) -> Option<u32> {
    (0..4).try_fold(0, |v, _| Some(v * 16 + chars.next()?.to_digit(16)?))
}

/// Decode one escape after its backslash; `None` if it is not valid JSON (lone surrogates
/// included, since they are no `char`).
fn escape(chars: &mut Chars<'_>) -> Option<char> {
    Some(match chars.next()? {
        c @ ('"' | '\\' | '/') => c,
        'b' => '\u{8}',
        'f' => '\u{c}',
        'n' => '\n',
        'r' => '\r',
        't' => '\t',
        'u' => {
            let hi = hex4(chars)?;
            if !(0xD800..0xDC00).contains(&hi) {
                return char::from_u32(hi);
            }
            if chars.next()? != '\\' || chars.next()? != 'u' {
                return None;
            }
            let lo = hex4(chars)?;
            if !(0xDC00..0xE000).contains(&lo) {
                return None;
            }
            char::from_u32(0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00))?
        }
        _ => return None,
    })
}

/// The next character of a raw string body: `Some(None)` for a malformed escape.
fn next_char(chars: &mut Chars<'_>) -> Option<Option<char>> {
    let c = chars.next()?;
    Some(if c == '\\' { escape(chars) } else { Some(c) })
}

/// The characters of a raw JSON string body (between the quotes, escapes still in place).
///
/// Bodies handed out by this crate were validated by [`Header::parse`]; on anything
/// malformed the iterator simply stops.
#[derive(Clone, Debug)]
pub struct Unescape<'a>(Chars<'a>);

/// Decode a raw JSON string body (as returned by [`Header::metadata`]).
pub fn unescape(raw: &str) -> Unescape<'_> {
    Unescape(raw.chars())
}

impl Iterator for Unescape<'_> {
    type Item = char;
    fn next(&mut self) -> Option<char> {
        next_char(&mut self.0)?
    }
}

/// `raw` decoded into `buf` (or `raw` itself when it holds no escape); `None` if it does
/// not fit.
pub fn unescape_into<'b>(raw: &'b str, buf: &'b mut [u8]) -> Option<&'b str> {
    if !raw.as_bytes().contains(&b'\\') {
        return Some(raw);
    }
    let mut n = 0;
    for c in unescape(raw) {
        let end = n + c.len_utf8();
        c.encode_utf8(buf.get_mut(n..end)?);
        n = end;
    }
    core::str::from_utf8(buf.get(..n)?).ok()
}

/// True when two raw string bodies decode to the same text.
fn same(a: &str, b: &str) -> bool {
    a == b || unescape(a).eq(unescape(b))
}

// ---------------------------------------------------------------------------------------
// The reader

/// A cursor over JSON text; every error is [`Error::BadJson`] at the cursor.
#[derive(Clone, Debug)]
struct Reader<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> Reader<'a> {
    fn bad(&self) -> Error {
        Error::BadJson { offset: self.pos }
    }

    /// The next non-whitespace byte, not consumed.
    fn peek(&mut self) -> Option<u8> {
        let b = self.s.as_bytes();
        while matches!(b.get(self.pos), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
        b.get(self.pos).copied()
    }

    fn eat(&mut self, c: u8) -> bool {
        let hit = self.peek() == Some(c);
        self.pos += usize::from(hit);
        hit
    }

    fn expect(&mut self, c: u8) -> Result<(), Error> {
        self.eat(c).then_some(()).ok_or(self.bad())
    }

    /// A string, validated; its raw body (between the quotes, escapes in place).
    fn string(&mut self) -> Result<&'a str, Error> {
        self.expect(b'"')?;
        let start = self.pos;
        loop {
            match *self.s.as_bytes().get(self.pos).ok_or(self.bad())? {
                b'"' => break,
                b'\\' => self.pos += 2,
                c if c < 0x20 => return Err(self.bad()),
                _ => self.pos += 1,
            }
        }
        let raw = self.s.get(start..self.pos).ok_or(self.bad())?;
        self.pos += 1;
        let mut chars = raw.chars();
        while let Some(c) = next_char(&mut chars) {
            c.ok_or(Error::BadJson { offset: start })?;
        }
        Ok(raw)
    }

    /// An unsigned integer (`0` or digits without a leading zero, as JSON writes them).
    fn uint(&mut self) -> Result<u64, Error> {
        self.peek();
        let (start, mut v) = (self.pos, 0u64);
        while let Some(d) = self
            .s
            .as_bytes()
            .get(self.pos)
            .filter(|c| c.is_ascii_digit())
        {
            let leading_zero = self.pos > start && v == 0;
            let next = v
                .checked_mul(10)
                .and_then(|v| v.checked_add(u64::from(d - b'0')));
            v = next.filter(|_| !leading_zero).ok_or(self.bad())?;
            self.pos += 1;
        }
        (self.pos > start).then_some(v).ok_or(self.bad())
    }

    /// The next key of an object and its `:`, `None` after the closing brace. `open` is
    /// true before the first key (the `{` is still to be read).
    fn key(&mut self, open: &mut bool) -> Result<Option<(&'a str, usize)>, Error> {
        if core::mem::take(open) {
            self.expect(b'{')?;
            if self.eat(b'}') {
                return Ok(None);
            }
        } else if !self.eat(b',') {
            return self.expect(b'}').map(|()| None);
        }
        self.peek();
        let at = self.pos;
        let key = self.string()?;
        self.expect(b':')?;
        Ok(Some((key, at)))
    }

    /// True when an array has another element; `open` as for [`Reader::key`].
    fn item(&mut self, open: &mut bool) -> Result<bool, Error> {
        if core::mem::take(open) {
            self.expect(b'[')?;
            return Ok(!self.eat(b']'));
        }
        if self.eat(b',') {
            return Ok(true);
        }
        self.expect(b']').map(|()| false)
    }

    /// An object of string values: `f(key, key offset, value)` for each member.
    fn strings(
        &mut self,
        mut f: impl FnMut(&'a str, usize, &'a str) -> Result<(), Error>,
    ) -> Result<(), Error> {
        let mut open = true;
        while let Some((key, at)) = self.key(&mut open)? {
            f(key, at, self.string()?)?;
        }
        Ok(())
    }
}

/// Record the key `key` (at `at`) of one object in `seen`, where a repeat (however
/// escaped) is found pairwise; `full` when `seen` is.
fn add_key<'a, const N: usize>(
    seen: &mut heapless::Vec<&'a str, N>,
    key: &'a str,
    at: usize,
    full: Error,
) -> Result<(), Error> {
    if key.len() > MAX_KEY {
        return Err(Error::KeyTooLong {
            offset: at,
            max: MAX_KEY as u32,
        });
    }
    if seen.iter().any(|k| same(k, key)) {
        return Err(Error::DuplicateName { offset: at });
    }
    seen.push(key).map_err(|_| full)
}

// ---------------------------------------------------------------------------------------
// The header

/// One tensor entry of the header.
#[derive(Clone, Copy, Debug)]
pub struct TensorInfo<'a> {
    /// Raw (still escaped) name; decode with [`TensorInfo::name`].
    pub name_raw: &'a str,
    /// Element type.
    pub dtype: Dtype,
    /// Number of dimensions.
    pub rank: usize,
    /// The first [`MAX_RANK`] dimensions.
    pub dims: [u64; MAX_RANK],
    /// Element count (`None` if it overflows u64).
    pub numel: Option<u64>,
    /// `data_offsets[0]`, from the start of the data section.
    pub begin: u64,
    /// `data_offsets[1]`.
    pub end: u64,
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
}

/// Read a tensor entry's object (the cursor is at its `{`).
fn entry<'a>(r: &mut Reader<'a>, name_raw: &'a str) -> Result<TensorInfo<'a>, Error> {
    let (mut dtype, mut dims, mut offsets) = (None, None, None);
    let mut open = true;
    while let Some((key, at)) = r.key(&mut open)? {
        let dup = Error::DuplicateName { offset: at };
        if same(key, "dtype") {
            let raw = r.string()?;
            let d = Dtype::from_chars(unescape(raw)).ok_or(Error::UnknownDtype { offset: at })?;
            dtype.replace(d).map_or(Ok(()), |_| Err(dup))?;
            continue;
        }
        let slot = match key {
            k if same(k, "shape") => &mut dims,
            k if same(k, "data_offsets") => &mut offsets,
            _ => return Err(Error::BadJson { offset: at }),
        };
        let (mut v, mut n, mut numel) = ([0u64; MAX_RANK], 0, Some(1u64));
        let mut open = true;
        while r.item(&mut open)? {
            let x = r.uint()?;
            if let Some(d) = v.get_mut(n) {
                *d = x;
            }
            numel = numel.and_then(|p| p.checked_mul(x));
            n += 1;
        }
        slot.replace((v, n, numel)).map_or(Ok(()), |_| Err(dup))?;
    }
    let (Some(dtype), Some((dims, rank, numel)), Some(([begin, end, ..], 2, _))) =
        (dtype, dims, offsets)
    else {
        return Err(r.bad());
    };
    Ok(TensorInfo {
        name_raw,
        dtype,
        rank,
        dims,
        numel,
        begin,
        end,
    })
}

/// A validated safetensors header and the data section after it.
#[derive(Clone, Copy, Debug)]
pub struct Header<'a> {
    json: &'a str,
    /// Offset of the `__metadata__` object in `json`.
    meta: Option<usize>,
    /// The data section.
    pub data: &'a [u8],
    /// File offset of the data section (`8 + N`).
    pub data_offset: usize,
    /// Number of tensor entries.
    pub tensor_count: usize,
}

impl<'a> Header<'a> {
    /// Split `bytes` into header and data and validate the header's JSON: the safetensors
    /// shape (an object of tensor entries and one `__metadata__` object of strings), known
    /// dtypes, the capacities ([`MAX_TENSORS`], [`MAX_METADATA`], [`MAX_KEY`]) and no key
    /// twice in any object.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, Error> {
        let prefix = bytes
            .first_chunk::<8>()
            .ok_or(Error::TooShort { len: bytes.len() })?;
        let header_len = u64::from_le_bytes(*prefix);
        let too_long = Error::HeaderTooLong {
            header_len,
            file_len: bytes.len(),
        };
        let data_offset = usize::try_from(header_len)
            .ok()
            .and_then(|n| n.checked_add(8))
            .ok_or(too_long)?;
        let (Some(head), Some(data)) = (bytes.get(8..data_offset), bytes.get(data_offset..)) else {
            return Err(too_long);
        };
        let json = core::str::from_utf8(head).map_err(|_| Error::HeaderNotUtf8)?;
        let mut r = Reader { s: json, pos: 0 };
        let (mut meta, mut n_tensors, mut open) = (None, 0, true);
        // The tensor names and `__metadata__`.
        let mut keys = heapless::Vec::<_, { MAX_TENSORS + 1 }>::new();
        let too_many = Error::TooManyTensors {
            max: MAX_TENSORS as u32,
        };
        while let Some((key, at)) = r.key(&mut open)? {
            add_key(&mut keys, key, at, too_many)?;
            r.peek();
            let start = r.pos;
            if same(key, META) {
                let mut keys = heapless::Vec::<_, MAX_METADATA>::new();
                let too_many = Error::TooManyMetadata {
                    max: MAX_METADATA as u32,
                };
                r.strings(|k, k_at, _| add_key(&mut keys, k, k_at, too_many))?;
                meta = Some(start);
            } else if n_tensors == MAX_TENSORS {
                return Err(too_many);
            } else {
                entry(&mut r, key)?;
                n_tensors += 1;
            }
        }
        if r.peek().is_some() {
            return Err(r.bad());
        }
        Ok(Header {
            json,
            meta,
            data,
            data_offset,
            tensor_count: n_tensors,
        })
    }

    /// The tensor entries, in header order.
    pub fn tensors(&self) -> Tensors<'a> {
        Tensors {
            r: Reader {
                s: self.json,
                pos: 0,
            },
            open: true,
        }
    }

    /// The raw value of `key`; [`Error::MissingMetadata`] if it is absent.
    pub fn folio(&self, key: MetaKey) -> Result<&'a str, Error> {
        self.metadata(key.as_str())
            .ok_or(Error::MissingMetadata { key })
    }

    /// The raw (still escaped) string value of a `__metadata__` key, without the quotes.
    pub fn metadata(&self, key: &str) -> Option<&'a str> {
        let (mut r, mut found) = (
            Reader {
                s: self.json,
                pos: self.meta?,
            },
            None,
        );
        let _ = r.strings(|k, _, v| {
            found = found.or(unescape(k).eq(key.chars()).then_some(v));
            Ok(())
        });
        found
    }
}

/// The tensor entries of a validated header, in header order.
#[derive(Clone, Debug)]
pub struct Tensors<'a> {
    r: Reader<'a>,
    open: bool,
}

impl<'a> Iterator for Tensors<'a> {
    type Item = TensorInfo<'a>;

    fn next(&mut self) -> Option<TensorInfo<'a>> {
        loop {
            let (key, _) = self.r.key(&mut self.open).ok()??;
            if !same(key, META) {
                return entry(&mut self.r, key).ok();
            }
            self.r.strings(|_, _, _| Ok(())).ok()?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::String;
    use std::vec::Vec;

    fn file(json: &str) -> Vec<u8> {
        let mut f = Vec::from((json.len() as u64).to_le_bytes());
        f.extend_from_slice(json.as_bytes());
        f
    }

    fn reader(s: &str) -> Reader<'_> {
        Reader { s, pos: 0 }
    }

    #[test]
    fn unescape_handles_every_escape() {
        let esc = |raw: &str| unescape(raw).collect::<String>();
        assert_eq!(esc(r#"a\"b\\c\/d\n\t\r\b\f"#), "a\"b\\c/d\n\t\r\u{8}\u{c}");
        assert_eq!(esc(r"\u0041\u00e9\u20AC\u0000"), "Aé€\0");
        assert_eq!(esc(r"\ud83d\ude00!"), "😀!");
        let mut buf = [0u8; 4];
        assert_eq!(unescape_into(r"\u0041\u00e9", &mut buf), Some("Aé"));
        assert_eq!(unescape_into(r"\u0041\u00e9\u00e9", &mut buf), None);
        assert_eq!(
            unescape_into("no escapes at all", &mut buf),
            Some("no escapes at all")
        );
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
            r#""ab\"#,
        ] {
            assert!(reader(bad).string().is_err(), "{bad}");
        }
        assert_eq!(reader(r#" "a\"b" "#).string(), Ok(r#"a\"b"#));
    }

    #[test]
    fn integers_are_json_unsigned_integers() {
        assert_eq!(reader(" 0").uint(), Ok(0));
        assert_eq!(reader("18446744073709551615").uint(), Ok(u64::MAX));
        for bad in ["", "-1", "01", "18446744073709551616", "x"] {
            assert!(reader(bad).uint().is_err(), "{bad}");
        }
        // The digits stop at anything else; the caller then expects `,` or `]`.
        let mut r = reader("1.5");
        assert_eq!((r.uint(), r.peek()), (Ok(1), Some(b'.')));
    }

    #[test]
    fn header_walks_tensors_and_metadata() {
        let f = file(
            r#"{"t\u0031":{"shape":[2,3],"dtype":"F16","data_offsets":[0,12]},
                "__metadata__":{"k":"v\"w", "\u006b2": ""} , "e":{"dtype":"I8","shape":[],"data_offsets":[12,13]}}   "#,
        );
        let h = Header::parse(&f).unwrap();
        assert_eq!(h.tensor_count, 2);
        let all: Vec<_> = h.tensors().collect();
        assert_eq!(all[0].name().collect::<String>(), "t1");
        let t = all[0];
        assert_eq!(
            (t.dtype, t.shape(), t.numel, t.begin, t.end),
            (Dtype::F16, &[2u64, 3][..], Some(6), 0, 12)
        );
        assert_eq!((all[1].rank, all[1].numel), (0, Some(1)));
        assert_eq!(h.metadata("k"), Some(r#"v\"w"#));
        assert_eq!(h.metadata("k2"), Some(""));
        assert_eq!(h.metadata("z"), None);
        assert_eq!(h.data_offset, f.len());
    }

    #[test]
    fn header_errors() {
        type Case = (&'static str, fn(&Error) -> bool);
        let bad_json: fn(&Error) -> bool = |e| matches!(e, Error::BadJson { .. });
        let dup: fn(&Error) -> bool = |e| matches!(e, Error::DuplicateName { .. });
        let cases: [Case; 15] = [
            (
                r#"{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1],"x":1}}"#,
                bad_json,
            ),
            (
                r#"{"a":{"dtype":"U8","shape":[1.0],"data_offsets":[0,1]}}"#,
                bad_json,
            ),
            (
                r#"{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,-1]}}"#,
                bad_json,
            ),
            (
                r#"{"a":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}"#,
                bad_json,
            ),
            (r#"{"a":{"dtype":"F16","shape":[1]}}"#, bad_json),
            (
                r#"{"a":{"dtype":"Q3","shape":[1],"data_offsets":[0,2]}}"#,
                |e| matches!(e, Error::UnknownDtype { .. }),
            ),
            (
                r#"{"a":{"dtype":"F16","shape":[1],"data_offsets":[0,2,4]}}"#,
                bad_json,
            ),
            (r#"{"__metadata__":{"k":1}}"#, bad_json),
            (r#"{} x"#, bad_json),
            (r#"[]"#, bad_json),
            (r#"{"__metadata__":{"k":"1","\u006B":"2"}}"#, dup),
            (r#"{"__metadata__":{},"__metadata__":{}}"#, dup),
            (
                r#"{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"\u0061":{}}"#,
                dup,
            ),
            (
                r#"{"a":{"dtype":"U8","dtype":"U8","shape":[1],"data_offsets":[0,1]}}"#,
                dup,
            ),
            (
                r#"{"a":{"dtype":"U8","shape":[1],"shape":[1],"data_offsets":[0,1]}}"#,
                dup,
            ),
        ];
        for (h, ok) in cases {
            let err = Header::parse(&file(h)).unwrap_err();
            assert!(ok(&err), "{h}: {err:?}");
        }
        assert_eq!(Header::parse(&file("{}")).unwrap().tensors().count(), 0);
        // Capacities: key length, metadata keys.
        let meta = |body: String| {
            Header::parse(&file(&std::format!(r#"{{"__metadata__":{{{body}}}}}"#))).map(|_| ())
        };
        let e = meta(std::format!(r#""{}":"""#, "k".repeat(MAX_KEY + 1)));
        assert!(
            matches!(e, Err(Error::KeyTooLong { max: 256, .. })),
            "{e:?}"
        );
        assert_eq!(
            meta(std::format!(r#""{}":"""#, "k".repeat(MAX_KEY))),
            Ok(())
        );
        let keys: Vec<String> = (0..=MAX_METADATA)
            .map(|i| std::format!(r#""k{i}":"""#))
            .collect();
        assert_eq!(
            meta(keys.join(",")),
            Err(Error::TooManyMetadata { max: 64 })
        );
        assert_eq!(meta(keys[..MAX_METADATA].join(",")), Ok(()));
    }

    #[test]
    fn split_checks_lengths() {
        assert_eq!(
            Header::parse(&[1, 2, 3]).unwrap_err(),
            Error::TooShort { len: 3 }
        );
        let mut f = Vec::from(100u64.to_le_bytes());
        f.extend_from_slice(b"{}");
        let too_long = Error::HeaderTooLong {
            header_len: 100,
            file_len: 10,
        };
        assert_eq!(Header::parse(&f).unwrap_err(), too_long);
        f[..8].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(matches!(
            Header::parse(&f),
            Err(Error::HeaderTooLong { .. })
        ));
        let mut f = Vec::from(2u64.to_le_bytes());
        f.extend_from_slice(&[0xff, 0xfe, 1]);
        assert_eq!(Header::parse(&f).unwrap_err(), Error::HeaderNotUtf8);
        let mut f = file("{}");
        f.extend_from_slice(b"abc");
        let h = Header::parse(&f).unwrap();
        assert_eq!((h.data, h.data_offset), (&b"abc"[..], 10));
    }
}
