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
            Self::Words if text.is_ascii() => words_ascii(text, out),
            Self::Words => words_unicode(text, out),
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
    matches!(
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

fn is_ascii_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

fn words_ascii(text: &str, out: &mut Tokens) {
    // ASCII fast path: lower-casing is byte-wise and cannot change where tokens start or end.
    out.buf.push_str(text);
    out.buf.make_ascii_lowercase();
    let bytes = text.as_bytes();
    let mut start: Option<usize> = None;
    for (i, &b) in bytes.iter().enumerate() {
        if is_ascii_word_byte(b) {
            start.get_or_insert(i);
        } else if let Some(s) = start.take() {
            push_span(&mut out.spans, s, i, i - s);
        }
    }
    if let Some(s) = start {
        push_span(&mut out.spans, s, bytes.len(), bytes.len() - s);
    }
}

fn words_unicode(text: &str, out: &mut Tokens) {
    // Lower-case first, as scikit-learn does: full case mapping can change the characters (e.g. U+0130
    // becomes "i" + U+0307), and tokens are cut from the lower-cased text.
    out.buf.push_str(&text.to_lowercase());
    let mut run: Option<(usize, usize)> = None; // (byte start, chars so far)
    for (i, c) in out.buf.char_indices() {
        if is_word_char(c) {
            match &mut run {
                Some((_, chars)) => *chars += 1,
                None => run = Some((i, 1)),
            }
        } else if let Some((s, chars)) = run.take() {
            push_span(&mut out.spans, s, i, chars);
        }
    }
    if let Some((s, chars)) = run {
        let end = out.buf.len();
        push_span(&mut out.spans, s, end, chars);
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
