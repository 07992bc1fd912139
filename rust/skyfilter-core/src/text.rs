//! Text normalisation and word tokenisation presets.
//!
//! Each [`Tokenizer`] turns a text into a normalised buffer plus the byte spans of its tokens in that
//! buffer. The presets reproduce, character for character, the Python methods users already trust:
//!
//! * [`Tokenizer::Words`]: scikit-learn's `CountVectorizer` defaults: `text.lower()` (full Unicode
//!   lower-casing, as Python's `str.lower`), then the tokens of the regex `(?u)\b\w\w+\b`, i.e. maximal
//!   runs of at least two word characters, where a word character is what Python's `re` calls `\w`:
//!   a letter (`L*`), a number (`Nd`, `Nl`, `No`) or `_`.
//! * [`Tokenizer::Whitespace`]: lm-evaluation-harness's decontamination janitor: ASCII letters are
//!   lower-cased, ASCII punctuation (`string.punctuation`) is deleted, and the result is split on
//!   whitespace as Python's `str.split()` does.

use std::sync::OnceLock;

use unicode_general_category::{get_general_category, GeneralCategory as Gc};

/// How a text is normalised and cut into tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tokenizer {
    /// scikit-learn `CountVectorizer` defaults: lowercase, tokens `(?u)\b\w\w+\b`.
    Words,
    /// lm-evaluation-harness janitor: ASCII lowercase, ASCII punctuation deleted, whitespace split.
    Whitespace,
}

impl Tokenizer {
    /// Parses a tokenizer name (`"words"` or `"whitespace"`).
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "words" => Some(Self::Words),
            "whitespace" => Some(Self::Whitespace),
            _ => None,
        }
    }

    /// The name accepted by [`Tokenizer::from_name`].
    pub fn name(self) -> &'static str {
        match self {
            Self::Words => "words",
            Self::Whitespace => "whitespace",
        }
    }

    /// Normalises `text` into `out`, replacing what `out` held.
    pub fn tokenize_into(self, text: &str, out: &mut Tokens) {
        out.clear();
        match self {
            Self::Words => words(text, out),
            Self::Whitespace => whitespace(text, out),
        }
    }

    /// Convenience: the tokens of `text` as owned strings.
    pub fn tokenize(self, text: &str) -> Vec<String> {
        let mut tokens = Tokens::default();
        self.tokenize_into(text, &mut tokens);
        tokens.iter().map(str::to_owned).collect()
    }
}

/// A normalised text and the byte spans of its tokens; reused between texts to avoid allocation.
#[derive(Default, Debug)]
pub struct Tokens {
    buf: String,
    spans: Vec<(u32, u32)>,
}

impl Tokens {
    fn clear(&mut self) {
        self.buf.clear();
        self.spans.clear();
    }

    /// Number of tokens.
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    /// Whether there are no tokens.
    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// The `i`-th token.
    pub fn get(&self, i: usize) -> &str {
        let (start, end) = self.spans[i];
        &self.buf[start as usize..end as usize]
    }

    /// All tokens in order.
    pub fn iter(&self) -> impl Iterator<Item = &str> + '_ {
        (0..self.len()).map(|i| self.get(i))
    }

    /// The normalised text the tokens point into.
    pub fn normalized(&self) -> &str {
        &self.buf
    }

    /// Byte spans of the tokens in [`Tokens::normalized`].
    pub fn spans(&self) -> &[(u32, u32)] {
        &self.spans
    }
}

/// Python's `\w` for `str` patterns: `str.isalnum()` or `_`, i.e. general categories L*, Nd, Nl, No.
pub fn is_word_char(c: char) -> bool {
    if c.is_ascii() {
        return c.is_ascii_alphanumeric() || c == '_';
    }
    let cp = c as usize;
    if cp < 0x1_0000 {
        // The Basic Multilingual Plane from an 8 KiB bitmap, built once: CJK text is all lookups.
        let bmp = BMP_WORD.get_or_init(|| {
            let mut bits = vec![0u64; 0x1_0000 / 64];
            for (cp, word) in (0..0x1_0000u32)
                .filter_map(char::from_u32)
                .map(|c| (c as usize, category_is_word(c)))
            {
                bits[cp / 64] |= u64::from(word) << (cp % 64);
            }
            bits
        });
        return bmp[cp / 64] >> (cp % 64) & 1 == 1;
    }
    category_is_word(c)
}

static BMP_WORD: OnceLock<Vec<u64>> = OnceLock::new();

fn category_is_word(c: char) -> bool {
    c == '_'
        || matches!(
            get_general_category(c),
            Gc::UppercaseLetter
                | Gc::LowercaseLetter
                | Gc::TitlecaseLetter
                | Gc::ModifierLetter
                | Gc::OtherLetter
                | Gc::DecimalNumber
                | Gc::LetterNumber
                | Gc::OtherNumber
        )
}

/// Python's `str.isspace()`: Unicode `White_Space` plus the four ASCII separators U+001C..U+001F.
pub fn is_python_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// `\w` for ASCII bytes, as a table: the tokenizer's inner loop.
static ASCII_WORD: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric() || c == b'_';
        b += 1;
    }
    table
};

fn is_ascii_word_byte(b: u8) -> bool {
    ASCII_WORD[b as usize]
}

fn words(text: &str, out: &mut Tokens) {
    // Lower-case first, as scikit-learn does: full case mapping can change the characters (e.g. U+0130
    // becomes "i" + U+0307), and tokens are cut from the lower-cased text. Lower-casing is per character
    // except for capital sigma, whose final form depends on its neighbours: only then lower-case whole.
    let mut runs = WordRuns::default();
    if text.contains('\u{3a3}') {
        for c in text.to_lowercase().chars() {
            runs.feed(c, out);
        }
    } else {
        // Mostly-ASCII text (curly quotes in English) goes through the ASCII path between its other characters.
        let mut rest = text;
        while !rest.is_empty() {
            let ascii = rest.bytes().position(|b| !b.is_ascii()).unwrap_or(rest.len());
            runs.feed_ascii(&rest[..ascii], out);
            let mut chars = rest[ascii..].chars();
            if let Some(c) = chars.next() {
                for lower in c.to_lowercase() {
                    runs.feed(lower, out);
                }
            }
            rest = chars.as_str();
        }
    }
    runs.finish(out);
}

/// The state of the `\w\w+` scanner over text appended to the buffer piece by piece.
#[derive(Default)]
struct WordRuns {
    /// Byte start in the buffer and length in characters of the current run of word characters.
    run: Option<(usize, usize)>,
}

impl WordRuns {
    fn word(&mut self, is_word: bool, at: usize, out: &mut Tokens) {
        if is_word {
            match &mut self.run {
                Some((_, chars)) => *chars += 1,
                None => self.run = Some((at, 1)),
            }
        } else if let Some((start, chars)) = self.run.take() {
            push_span(&mut out.spans, start, at, chars);
        }
    }

    /// One (already lower-cased) character.
    fn feed(&mut self, c: char, out: &mut Tokens) {
        let at = out.buf.len();
        out.buf.push(c);
        self.word(is_word_char(c), at, out);
    }

    /// ASCII text, lower-cased byte-wise here.
    fn feed_ascii(&mut self, text: &str, out: &mut Tokens) {
        let base = out.buf.len();
        out.buf.push_str(text);
        out.buf[base..].make_ascii_lowercase();
        // Alternate two tight scans, to the end of a run and to the start of the next, instead of a
        // branch per byte.
        let bytes = text.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            match &mut self.run {
                Some((start, chars)) => {
                    let len = bytes[i..]
                        .iter()
                        .position(|&b| !is_ascii_word_byte(b))
                        .unwrap_or(bytes.len() - i);
                    *chars += len;
                    i += len;
                    if i < bytes.len() {
                        push_span(&mut out.spans, *start, base + i, *chars);
                        self.run = None;
                    }
                }
                None => {
                    i += bytes[i..]
                        .iter()
                        .position(|&b| is_ascii_word_byte(b))
                        .unwrap_or(bytes.len() - i);
                    if i < bytes.len() {
                        self.run = Some((base + i, 0));
                    }
                }
            }
        }
    }

    fn finish(self, out: &mut Tokens) {
        if let Some((start, chars)) = self.run {
            push_span(&mut out.spans, start, out.buf.len(), chars);
        }
    }
}

fn push_span(spans: &mut Vec<(u32, u32)>, start: usize, end: usize, chars: usize) {
    if chars >= 2 {
        spans.push((start as u32, end as u32));
    }
}

fn whitespace(text: &str, out: &mut Tokens) {
    let mut start: Option<usize> = None;
    for c in text.chars() {
        if c.is_ascii_punctuation() {
            continue;
        }
        if is_python_space(c) {
            if let Some(s) = start.take() {
                out.spans.push((s as u32, out.buf.len() as u32));
            }
            continue;
        }
        start.get_or_insert(out.buf.len());
        out.buf.push(c.to_ascii_lowercase());
    }
    if let Some(s) = start {
        out.spans.push((s as u32, out.buf.len() as u32));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_drops_one_char_tokens_and_lowercases() {
        assert_eq!(
            Tokenizer::Words.tokenize("I ate a Big_apple, 42 times!"),
            ["ate", "big_apple", "42", "times"]
        );
    }

    #[test]
    fn words_unicode_follows_python() {
        // U+0130 lower-cases to "i" + combining dot (not a word char), splitting the token.
        assert_eq!(
            Tokenizer::Words.tokenize("İstanbul Ünïcödé ½½"),
            ["stanbul", "ünïcödé", "½½"]
        );
        // Final sigma as str.lower() does it.
        assert_eq!(Tokenizer::Words.tokenize("ΟΔΟΣ ΟΔΟΣ"), ["οδος", "οδος"]);
    }

    #[test]
    fn whitespace_deletes_ascii_punctuation_only() {
        assert_eq!(
            Tokenizer::Whitespace.tokenize("Hello, WORLD -- don't «Ünï» a\u{1c}b"),
            ["hello", "world", "dont", "«Ünï»", "a", "b"]
        );
    }

    #[test]
    fn empty_and_blank_texts_have_no_tokens() {
        for t in [Tokenizer::Words, Tokenizer::Whitespace] {
            assert!(t.tokenize("").is_empty());
            assert!(t.tokenize("  \n\t ... ").is_empty());
        }
    }

    #[test]
    fn names_round_trip() {
        for t in [Tokenizer::Words, Tokenizer::Whitespace] {
            assert_eq!(Tokenizer::from_name(t.name()), Some(t));
        }
        assert_eq!(Tokenizer::from_name("bpe"), None);
    }
}
