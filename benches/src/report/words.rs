//! The word-accuracy metric: the share of generated words found in the training text's
//! vocabulary of words.
//!
//! A word is a maximal run of ASCII letters and apostrophes that holds at least one
//! letter (`'tis`, `o'er` and `ROMEO` are words; a lone `'` is not). Words are compared
//! lower-cased, so `Romeo` at the start of a line and `romeo` inside one are the same word.
use std::collections::HashSet;

/// The words of `text`, in order (borrowed, original case).
pub fn split_words(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| !is_word_char(c))
        .filter(|w| w.chars().any(|c| c.is_ascii_alphabetic()))
}

fn is_word_char(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '\''
}

/// The set of (lower-cased) words of a text.
pub struct Vocabulary {
    words: HashSet<String>,
}

impl Vocabulary {
    /// Every word of `text`.
    pub fn from_text(text: &str) -> Self {
        Self {
            words: split_words(text).map(str::to_ascii_lowercase).collect(),
        }
    }

    /// Distinct words.
    pub fn len(&self) -> usize {
        self.words.len()
    }

    /// True when `word` (any case) is in the vocabulary.
    pub fn contains(&self, word: &str) -> bool {
        // Most words are already lower case: skip the allocation for them.
        if word.bytes().any(|b| b.is_ascii_uppercase()) {
            self.words.contains(&word.to_ascii_lowercase())
        } else {
            self.words.contains(word)
        }
    }
}

/// Words found and words counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// Words that are in the vocabulary.
    pub found: usize,
    /// Words counted.
    pub total: usize,
}

impl Tally {
    /// `found / total` (0 when no word was counted).
    pub fn share(&self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            self.found as f64 / self.total as f64
        }
    }

    /// The sum of two tallies.
    pub fn add(self, other: Tally) -> Tally {
        Tally {
            found: self.found + other.found,
            total: self.total + other.total,
        }
    }
}

/// Counts the words of `sample` found in `vocab`. A sample cut off by the length limit
/// usually ends inside a word; with `drop_cut_word` that last, possibly partial, word is
/// not counted.
pub fn tally(vocab: &Vocabulary, sample: &str, drop_cut_word: bool) -> Tally {
    let mut words: Vec<&str> = split_words(sample).collect();
    if drop_cut_word && sample.chars().next_back().is_some_and(is_word_char) {
        words.pop();
    }
    let found = words.iter().filter(|w| vocab.contains(w)).count();
    Tally {
        found,
        total: words.len(),
    }
}

/// The first `floor(0.9 n)` characters of `text`: the exporter's train split
/// (`Dataset::new` splits the token ids, one per character, at `n * 9 / 10`).
pub fn train_split(text: &str) -> &str {
    let n = text.chars().count() * 9 / 10;
    match text.char_indices().nth(n) {
        Some((i, _)) => &text[..i],
        None => text,
    }
}

/// A baseline with no model: `n` characters drawn independently from the character
/// frequencies of `text` (splitmix64 seeded by `seed`).
pub fn unigram_sample(text: &str, n: usize, seed: u64) -> String {
    let chars: Vec<char> = text.chars().collect();
    if chars.is_empty() {
        return String::new();
    }
    let mut state = seed;
    (0..n)
        .map(|_| {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            // A uniformly drawn position of the text has each character's frequency.
            chars[(z % chars.len() as u64) as usize]
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_runs_of_letters_and_apostrophes() {
        let w: Vec<&str> = split_words("ROMEO:\n'Tis o'er, my lord--' 42 x-ray;' ").collect();
        assert_eq!(w, ["ROMEO", "'Tis", "o'er", "my", "lord", "x", "ray"]);
        assert_eq!(split_words("  ,.;:!? 123 ' '' ").count(), 0);
        assert_eq!(split_words("").count(), 0);
    }

    #[test]
    fn vocabulary_ignores_case() {
        let v = Vocabulary::from_text(
            "First Citizen:\nBefore we proceed any further, hear me speak.\nfirst",
        );
        assert_eq!(v.len(), 10);
        assert!(v.contains("FIRST") && v.contains("first") && v.contains("Citizen"));
        assert!(!v.contains("second") && !v.contains("fir"));
    }

    #[test]
    fn tally_counts_found_words_and_drops_a_cut_word() {
        let v = Vocabulary::from_text("the king is dead long live the king");
        // "the", "king", "is" found; "qqq", "kin" not.
        let t = tally(&v, "The KING is qqq kin", false);
        assert_eq!(t, Tally { found: 3, total: 5 });
        assert!((t.share() - 0.6).abs() < 1e-12);
        // Ends inside a word: "kin" is dropped.
        assert_eq!(
            tally(&v, "The KING is qqq kin", true),
            Tally { found: 3, total: 4 }
        );
        // Ends after punctuation: nothing is dropped.
        assert_eq!(
            tally(&v, "The KING is qqq kin.", true),
            Tally { found: 3, total: 5 }
        );
        assert_eq!(tally(&v, "", true).share(), 0.0);
        assert_eq!(
            t.add(Tally { found: 1, total: 5 }),
            Tally {
                found: 4,
                total: 10
            }
        );
    }

    #[test]
    fn train_split_is_the_first_ninety_percent() {
        let text: String = (0..1003)
            .map(|i| char::from(b'a' + (i % 26) as u8))
            .collect();
        assert_eq!(train_split(&text).len(), 902);
        assert_eq!(train_split("abcdefghij"), "abcdefghi");
        assert_eq!(train_split(""), "");
        // Counted in characters, not bytes.
        assert_eq!(train_split("ééééééééééxx"), "éééééééééé");
    }

    #[test]
    fn unigram_sample_follows_the_character_frequencies() {
        let a = unigram_sample("aaab", 4000, 7);
        assert_eq!(a.chars().count(), 4000);
        assert_eq!(a, unigram_sample("aaab", 4000, 7));
        assert_ne!(a, unigram_sample("aaab", 4000, 8));
        let bs = a.chars().filter(|&c| c == 'b').count();
        assert!(a.chars().all(|c| c == 'a' || c == 'b'));
        // Expect 1000 b's; 5 standard deviations is about 137.
        assert!((860..=1140).contains(&bs), "{bs}");
        assert!(unigram_sample("", 5, 1).is_empty());
    }
}
