//! Stage 7: characters ↔ token ids, from `folio.vocab`: token `i` is the `i`-th Unicode
//! scalar value of the (decoded) string.
//!
//! The table is a fixed `[char; MAX_VOCAB]` (1 KiB); encoding is a linear scan per
//! character (at most [`MAX_VOCAB`] compares), decoding one token at a time is an index.
use crate::config::MAX_VOCAB;
use crate::error::Error;
use crate::header::unescape;

/// A character-level vocabulary.
#[derive(Debug, Clone)]
pub struct Tokenizer {
    /// (MAX_VOCAB) characters; the first `len` are the vocabulary.
    chars: [char; MAX_VOCAB],
    len: usize,
}

impl Tokenizer {
    /// Read the raw (escaped) `folio.vocab` value: exactly `vocab_size` distinct characters.
    pub(crate) fn parse(raw: &str, vocab_size: usize) -> Result<Self, Error> {
        let mut t = Tokenizer {
            chars: ['\0'; MAX_VOCAB],
            len: 0,
        };
        let mut found = 0usize;
        for ch in unescape(raw) {
            if found < vocab_size {
                if t.chars().contains(&ch) {
                    let index = found as u32;
                    return Err(Error::DuplicateVocab { index, ch });
                }
                if let Some(slot) = t.chars.get_mut(found) {
                    *slot = ch;
                    t.len = found + 1;
                }
            }
            found += 1;
        }
        if found != vocab_size || t.len != vocab_size {
            return Err(Error::VocabLength {
                expected: vocab_size as u32,
                found: found.min(u32::MAX as usize) as u32,
            });
        }
        Ok(t)
    }

    /// Number of tokens.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True for an empty vocabulary (never, for a loaded model).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The vocabulary, in token-id order.
    pub fn chars(&self) -> &[char] {
        self.chars.get(..self.len).unwrap_or(&[])
    }

    /// Token id of `ch`, if it is in the vocabulary.
    pub fn token(&self, ch: char) -> Option<u32> {
        self.chars().iter().position(|&c| c == ch).map(|i| i as u32)
    }

    /// Encode `text` into `out`, returning the number of tokens written.
    ///
    /// Errors: [`Error::UnknownChar`] naming the first character not in the vocabulary and
    /// its index in characters; [`Error::BufferTooSmall`] (with the text's length in
    /// characters) if `out` is shorter than the text.
    pub fn encode(&self, text: &str, out: &mut [u32]) -> Result<usize, Error> {
        let mut n = 0;
        for (pos, ch) in text.chars().enumerate() {
            let tok = self.token(ch).ok_or(Error::UnknownChar { ch, pos })?;
            let Some(slot) = out.get_mut(pos) else {
                return Err(Error::BufferTooSmall {
                    needed: text.chars().count(),
                });
            };
            *slot = tok;
            n = pos + 1;
        }
        Ok(n)
    }

    /// The character of one token.
    pub fn decode(&self, token: u32) -> Result<char, Error> {
        self.chars()
            .get(token as usize)
            .copied()
            .ok_or(Error::TokenOutOfRange {
                token,
                vocab_size: self.len as u32,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_with_escapes() {
        // Decoded: "\n A\"é"
        let t = Tokenizer::parse(r#"\n \u0041\"é"#, 5).unwrap();
        assert_eq!(t.chars(), ['\n', ' ', 'A', '"', 'é']);
        let mut out = [0u32; 8];
        let n = t.encode("A \"é\n", &mut out).unwrap();
        assert_eq!(&out[..n], [2, 1, 3, 4, 0]);
        let back: std::string::String = out[..n].iter().map(|&i| t.decode(i).unwrap()).collect();
        assert_eq!(back, "A \"é\n");
        assert_eq!(
            t.decode(5),
            Err(Error::TokenOutOfRange {
                token: 5,
                vocab_size: 5
            })
        );
    }

    #[test]
    fn nul_is_a_token_like_any_other() {
        let t = Tokenizer::parse(r"\u0000ab", 3).unwrap();
        assert_eq!(t.chars(), ['\0', 'a', 'b']);
        assert_eq!(t.token('\0'), Some(0));
        assert_eq!(
            Tokenizer::parse(r"a\u0000\u0000", 3).unwrap_err(),
            Error::DuplicateVocab { index: 2, ch: '\0' }
        );
    }

    #[test]
    fn unknown_char_names_char_and_char_index() {
        let t = Tokenizer::parse("ab", 2).unwrap();
        let mut out = [0u32; 8];
        assert_eq!(
            t.encode("abéz", &mut out),
            Err(Error::UnknownChar { ch: 'é', pos: 2 })
        );
        assert_eq!(
            t.encode("ab", &mut out[..1]),
            Err(Error::BufferTooSmall { needed: 2 })
        );
        assert_eq!(t.encode("", &mut out), Ok(0));
    }

    #[test]
    fn bad_vocabularies() {
        let length = |expected, found| Err(Error::VocabLength { expected, found });
        assert_eq!(Tokenizer::parse("ab", 3).map(|_| ()), length(3, 2));
        assert_eq!(Tokenizer::parse("abc", 2).map(|_| ()), length(2, 3));
        assert_eq!(Tokenizer::parse("", 1).map(|_| ()), length(1, 0));
        assert_eq!(
            Tokenizer::parse(r"ab\u0061", 3).unwrap_err(),
            Error::DuplicateVocab { index: 2, ch: 'a' }
        );
    }
}
