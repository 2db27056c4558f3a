//! Stage 7: characters ↔ token ids, from `folio.vocab` (a JSON array of one-character
//! strings, itself inside a JSON string). Token `i` is the `i`-th entry.
//!
//! The table is a fixed `[char; MAX_VOCAB]` (1 KiB); encoding is a linear scan per
//! character (at most [`MAX_VOCAB`] compares), decoding one token at a time is an index.
use crate::error::{Error, MetaKey};
use crate::format::{EscSource, Reader};
use crate::MAX_VOCAB;

/// A character-level vocabulary.
#[derive(Debug, Clone)]
pub struct Tokenizer {
    /// (MAX_VOCAB) characters; the first `len` are the vocabulary.
    chars: [char; MAX_VOCAB],
    len: usize,
}

impl Tokenizer {
    /// Parse the raw (escaped) `folio.vocab` value; it must hold exactly `vocab_size`
    /// distinct one-character strings.
    pub(crate) fn parse(raw: &str, vocab_size: usize) -> Result<Self, Error> {
        let mut t = Tokenizer {
            chars: ['\0'; MAX_VOCAB],
            len: 0,
        };
        let mut err = None;
        let mut r = Reader::new(EscSource::new(raw));
        let res = r.array(|r, i| {
            let index = i as u32;
            t.len = i + 1;
            if r.peek() != Some('"') {
                err = err.or(Some(Error::BadVocabEntry { index }));
                return r.skip_value();
            }
            let (n, first) = r.string_one()?;
            match first {
                Some(ch) if n == 1 => {
                    let seen = t.chars.get(..t.len).is_some_and(|s| s.contains(&ch));
                    if seen {
                        err = err.or(Some(Error::DuplicateVocab { index, ch }));
                    }
                    match t.chars.get_mut(i) {
                        Some(slot) if i < vocab_size => *slot = ch,
                        _ => {}
                    }
                }
                _ => err = err.or(Some(Error::BadVocabEntry { index })),
            }
            Ok(())
        });
        res.map_err(|offset| Error::BadMetadataJson {
            key: MetaKey::Vocab,
            offset,
        })?;
        if !r.at_end() {
            return Err(Error::BadMetadataJson {
                key: MetaKey::Vocab,
                offset: r.offset(),
            });
        }
        if t.len != vocab_size {
            return Err(Error::VocabLength {
                expected: vocab_size as u32,
                found: t.len.min(u32::MAX as usize) as u32,
            });
        }
        if let Some(e) = err {
            return Err(e);
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

    fn vocab(s: &str, n: usize) -> Result<Tokenizer, Error> {
        Tokenizer::parse(s, n)
    }

    #[test]
    fn round_trip_with_escapes() {
        // Decoded: ["\n", " ", "A", "\"", "é"]
        let t = vocab(r#"[\"\\n\", \" \", \"\\u0041\", \"\\\"\", \"é\"]"#, 5).unwrap();
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
    fn unknown_char_names_char_and_char_index() {
        let t = vocab(r#"[\"a\", \"b\"]"#, 2).unwrap();
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
        assert_eq!(
            vocab(r#"[\"a\", \"b\"]"#, 3).unwrap_err(),
            Error::VocabLength {
                expected: 3,
                found: 2
            }
        );
        assert_eq!(
            vocab(r#"[\"a\", \"bc\"]"#, 2).unwrap_err(),
            Error::BadVocabEntry { index: 1 }
        );
        assert_eq!(
            vocab(r#"[\"a\", \"\"]"#, 2).unwrap_err(),
            Error::BadVocabEntry { index: 1 }
        );
        assert_eq!(
            vocab(r#"[\"a\", 7]"#, 2).unwrap_err(),
            Error::BadVocabEntry { index: 1 }
        );
        assert_eq!(
            vocab(r#"[\"a\", \"\\u0061\"]"#, 2).unwrap_err(),
            Error::DuplicateVocab { index: 1, ch: 'a' }
        );
        assert!(matches!(
            vocab(r#"[\"a\""#, 1),
            Err(Error::BadMetadataJson {
                key: MetaKey::Vocab,
                ..
            })
        ));
        assert!(matches!(
            vocab(r#"{}"#, 1),
            Err(Error::BadMetadataJson { .. })
        ));
    }
}
