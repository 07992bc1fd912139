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

use std::collections::HashMap;
use std::mem::MaybeUninit;
use std::sync::OnceLock;

use unicode_general_category::{get_general_category, GeneralCategory as Gc};

use crate::rows::utf8;
use crate::Error;

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

    /// Normalises `text` into `out`, replacing what `out` held; a text whose normalised form passes 4 GiB is
    /// [`Untokenizable::TooLong`] (`out` then holds no tokens).
    pub fn tokenize_into(self, text: &str, out: &mut Tokens) -> Result<(), Untokenizable> {
        let tokenized = self.tokenize_utf8_into(text.as_bytes(), out);
        debug_assert_ne!(tokenized, Err(Untokenizable::NotUtf8));
        tokenized
    }

    /// Normalises the text `bytes` into `out` as [`Tokenizer::tokenize_into`] does, checking that they are UTF-8
    /// (`out` holds no tokens when they are not). The `words` tokenizer checks ASCII text (most text) in its own
    /// pass over the bytes, and each other character as it decodes it.
    pub fn tokenize_utf8_into(self, bytes: &[u8], out: &mut Tokens) -> Result<(), Untokenizable> {
        self.tokenize_within(bytes, out, MAX_NORMALISED_BYTES)
    }

    /// [`Tokenizer::tokenize_utf8_into`] with at most `max` bytes of normalised text.
    fn tokenize_within(self, bytes: &[u8], out: &mut Tokens, max: usize) -> Result<(), Untokenizable> {
        out.clear();
        let utf8 = match self {
            Self::Words => words(bytes, out),
            Self::Whitespace => utf8(bytes).map(|text| whitespace(text, out)).is_some(),
        };
        // Past `max`, the spans' 32-bit positions have wrapped round: the tokens are not the text's, and none is kept.
        let fault = if !utf8 {
            Some(Untokenizable::NotUtf8)
        } else if out.buf.len() > max {
            Some(Untokenizable::TooLong)
        } else {
            None
        };
        if fault.is_some() {
            out.clear();
        }
        out.pad();
        fault.map_or(Ok(()), Err)
    }

    /// Convenience: the tokens of `text` as owned strings (none for a text over 4 GiB once normalised).
    pub fn tokenize(self, text: &str) -> Vec<String> {
        let mut tokens = Tokens::default();
        let _ = self.tokenize_into(text, &mut tokens);
        tokens.iter().map(str::to_owned).collect()
    }
}

/// The most bytes of normalised text one text may have: token spans hold 32-bit positions.
const MAX_NORMALISED_BYTES: usize = u32::MAX as usize;

/// Why a text was not tokenized.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Untokenizable {
    /// The bytes are not UTF-8.
    NotUtf8,
    /// The normalised text passes 4 GiB, more than token spans' 32-bit positions reach.
    TooLong,
}

impl Untokenizable {
    /// The error for text `text` (its index among the texts passed in), of `bytes` bytes.
    pub fn error(self, text: usize, bytes: usize) -> Error {
        match self {
            Self::NotUtf8 => Error::InvalidUtf8 { text },
            Self::TooLong => Error::TextTooLong { text, bytes },
        }
    }
}

/// A normalised text and the byte spans of its tokens; reused between texts to avoid allocation.
#[derive(Default, Debug)]
pub struct Tokens {
    /// The normalised text, then [`PADDING`] zero bytes.
    buf: String,
    /// Length of the normalised text in `buf`.
    len: usize,
    spans: Vec<Span>,
}

/// A token's byte span in the normalised text: `[start, end]` (an array, whose layout is fixed: the AVX-512
/// tokenizer writes spans eight at a time into a vector register's lanes).
pub type Span = [u32; 2];

/// Zero bytes kept after the normalised text: 16 bytes from any token's start can be read without a bounds branch.
const PADDING: &str = "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0";

impl Tokens {
    fn clear(&mut self) {
        self.buf.clear();
        self.spans.clear();
    }

    fn pad(&mut self) {
        self.len = self.buf.len();
        self.buf.push_str(PADDING);
    }

    /// The normalised text followed by 16 zero bytes.
    pub(crate) fn padded(&self) -> &[u8] {
        self.buf.as_bytes()
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
        let [start, end] = self.spans[i];
        &self.buf[start as usize..end as usize]
    }

    /// The bytes of every token, in order (no character-boundary checks: the spans are the tokenizer's).
    pub fn bytes(&self) -> impl Iterator<Item = &[u8]> + '_ {
        self.spans
            .iter()
            .map(|&[start, end]| &self.buf.as_bytes()[start as usize..end as usize])
    }

    /// All tokens in order.
    pub fn iter(&self) -> impl Iterator<Item = &str> + '_ {
        (0..self.len()).map(|i| self.get(i))
    }

    /// The normalised text the tokens point into.
    pub fn normalized(&self) -> &str {
        &self.buf[..self.len]
    }

    /// Byte spans of the tokens in [`Tokens::normalized`].
    pub fn spans(&self) -> &[Span] {
        &self.spans
    }
}

/// Python's `\w` for `str` patterns: `str.isalnum()` or `_`, i.e. general categories L*, Nd, Nl, No (under
/// the installed [`CharClasses`]).
pub fn is_word_char(c: char) -> bool {
    c == '_' || c.is_ascii_alphanumeric() || (!c.is_ascii() && classes().is_word(c))
}

/// What the `words` preset needs to know of the characters beyond ASCII: which are word characters and how
/// each lower-cases. By default from this crate's Unicode tables (Unicode 16); a caller whose reference uses
/// another Unicode version (Python 3.11 has 14, 3.12 15, 3.13 15.1) installs that version's answers with
/// [`install_char_classes`] before the first text is tokenized.
pub struct CharClasses {
    /// One bit per code point: a word character.
    word: Vec<u64>,
    /// One bit per code point: lower-cases to something else than itself (most characters past ASCII do not:
    /// punctuation, CJK), so the tokenizer looks no further for the others.
    cased: Vec<u64>,
    /// One bit per code point: lower-cases to `lower[c]` rather than to `char::to_lowercase`.
    lowered: Vec<u64>,
    lower: HashMap<char, String>,
}

const CODE_POINTS: usize = 0x11_0000;

fn bit(bits: &[u64], c: char) -> bool {
    let cp = c as usize;
    bits[cp / 64] >> (cp % 64) & 1 == 1
}

fn set_bit(bits: &mut [u64], cp: usize) {
    bits[cp / 64] |= 1 << (cp % 64);
}

impl CharClasses {
    /// This crate's own tables.
    fn native() -> Self {
        let (mut word, mut cased) = (vec![0u64; CODE_POINTS / 64], vec![0u64; CODE_POINTS / 64]);
        for c in (0..CODE_POINTS as u32).filter_map(char::from_u32) {
            if category_is_word(c) {
                set_bit(&mut word, c as usize);
            }
            if !lowers_to_itself(c) {
                set_bit(&mut cased, c as usize);
            }
        }
        Self {
            word,
            cased,
            lowered: vec![0u64; CODE_POINTS / 64],
            lower: HashMap::new(),
        }
    }

    /// The classes of another Unicode version: `words` are the half-open code point ranges of its word
    /// characters, `lowercase` every code point whose lower-case form differs from itself, with that form (a
    /// character's full mapping out of context). Code points this crate lower-cases differently follow
    /// `lowercase`.
    pub fn from_definitions(words: &[(u32, u32)], lowercase: &[(u32, String)]) -> Result<Self, Error> {
        let mut word = vec![0u64; CODE_POINTS / 64];
        for &(start, end) in words {
            if start > end || end as usize > CODE_POINTS {
                return Err(Error::InvalidCharClasses(format!(
                    "word range {start:#x}..{end:#x} is not within the code points"
                )));
            }
            for cp in start..end {
                set_bit(&mut word, cp as usize);
            }
        }
        let mut given = HashMap::with_capacity(lowercase.len());
        for (cp, lower) in lowercase {
            let c =
                char::from_u32(*cp).ok_or_else(|| Error::InvalidCharClasses(format!("{cp:#x} is not a character")))?;
            given.insert(c, lower.as_str());
        }
        let (mut lowered, mut lower) = (vec![0u64; CODE_POINTS / 64], HashMap::new());
        let mut cased = vec![0u64; CODE_POINTS / 64];
        for c in (0..CODE_POINTS as u32).filter_map(char::from_u32) {
            let theirs = given.get(&c).copied();
            let same = match theirs {
                Some(t) => c.to_lowercase().eq(t.chars()),
                None => lowers_to_itself(c),
            };
            if !same {
                set_bit(&mut lowered, c as usize);
                lower.insert(c, theirs.map_or_else(|| c.to_string(), str::to_owned));
            }
            if theirs.is_some_and(|t| !t.chars().eq([c])) {
                set_bit(&mut cased, c as usize);
            }
        }
        Ok(Self {
            word,
            cased,
            lowered,
            lower,
        })
    }

    #[inline]
    fn is_word(&self, c: char) -> bool {
        bit(&self.word, c)
    }

    /// Whether `c` lower-cases to something else than itself.
    #[inline]
    fn is_cased(&self, c: char) -> bool {
        bit(&self.cased, c)
    }

    /// The lower-case form of `c` when it is not `char::to_lowercase`'s.
    #[inline]
    fn lower_override(&self, c: char) -> Option<&str> {
        if bit(&self.lowered, c) {
            self.lower.get(&c).map(String::as_str)
        } else {
            None
        }
    }

    /// Number of code points whose lower-case form is not `char::to_lowercase`'s.
    pub fn lowercase_overrides(&self) -> usize {
        self.lower.len()
    }
}

static CLASSES: OnceLock<CharClasses> = OnceLock::new();

fn classes() -> &'static CharClasses {
    CLASSES.get_or_init(CharClasses::native)
}

/// Makes `classes` the ones every tokenizer reads; `false` (and nothing changes) once some are in use: they are
/// fixed for the life of the process, so that every text is tokenized alike.
pub fn install_char_classes(classes: CharClasses) -> bool {
    CLASSES.set(classes).is_ok()
}

/// Whether character classes are in use (installed, or the native ones taken by a first tokenization).
pub fn char_classes_fixed() -> bool {
    CLASSES.get().is_some()
}

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

/// Appends the lower-case form of `c` out of context (a capital sigma is `σ`) under the installed
/// [`CharClasses`]: what the reference interpreter's `c.lower()` gives, whatever its Unicode version.
pub fn push_lowercase(c: char, out: &mut String) {
    match classes().lower_override(c) {
        Some(lower) => out.push_str(lower),
        None => out.extend(c.to_lowercase()),
    }
}

/// Whether `char::to_lowercase` gives `c` itself.
fn lowers_to_itself(c: char) -> bool {
    let mut lower = c.to_lowercase();
    lower.len() == 1 && lower.next() == Some(c)
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

fn words(bytes: &[u8], out: &mut Tokens) -> bool {
    // Lower-case first, as scikit-learn does: full case mapping can change the characters (e.g. U+0130
    // becomes "i" + U+0307), and tokens are cut from the lower-cased text. Lower-casing is per character
    // except for capital sigma, whose final form depends on its neighbours (see `words_with_sigma`).
    let mut runs = WordRuns::default();
    let mut at = runs.feed_ascii(bytes, out);
    // Past the ASCII, each character is checked as it is decoded, and a stretch of ASCII that follows goes through
    // the ASCII path: checking all that followed the first character that is not ASCII, at once, read half the bytes
    // of real prompts (RMB's) for the 1.6% of them that are not ASCII.
    while at < bytes.len() {
        let Some((c, len)) = next_char(&bytes[at..]) else {
            return false;
        };
        if c == '\u{3a3}' {
            if utf8(&bytes[at..]).is_none() {
                return false;
            }
            // SAFETY: ASCII and characters checked one by one up to `at`, UTF-8 (checked just above) from there.
            let text = unsafe { std::str::from_utf8_unchecked(bytes) };
            out.clear();
            runs = WordRuns::default();
            words_with_sigma(text, classes(), &mut runs, out);
            break;
        }
        runs.feed_lowered(c, classes(), out);
        at += len;
        if bytes.get(at).is_some_and(u8::is_ascii) {
            at += runs.feed_ascii(&bytes[at..], out);
        }
    }
    runs.finish(out);
    true
}

/// The character that `bytes` (not empty) start with, and its length in bytes, if they start with one in UTF-8: a
/// well-formed sequence of the Unicode standard's table 3-7 (no overlong form, no surrogate, nothing past
/// U+10FFFF).
#[inline]
fn next_char(bytes: &[u8]) -> Option<(char, usize)> {
    let lead = bytes[0];
    // The length, and the range of the second byte (the others are continuation bytes, 0x80 to 0xBF).
    let (len, second) = match lead {
        0x00..=0x7F => return Some((char::from(lead), 1)),
        0xC2..=0xDF => (2, 0x80..=0xBF),
        0xE0 => (3, 0xA0..=0xBF),
        0xED => (3, 0x80..=0x9F),
        0xE1..=0xEF => (3, 0x80..=0xBF),
        0xF0 => (4, 0x90..=0xBF),
        0xF1..=0xF3 => (4, 0x80..=0xBF),
        0xF4 => (4, 0x80..=0x8F),
        _ => return None,
    };
    let seq = bytes.get(..len)?;
    let tail = |b: u8| b & 0xC0 == 0x80;
    if !second.contains(&seq[1]) {
        return None;
    }
    let code = match *seq {
        [_, b1] => u32::from(lead & 0x1F) << 6 | u32::from(b1 & 0x3F),
        [_, b1, b2] if tail(b2) => u32::from(lead & 0x0F) << 12 | u32::from(b1 & 0x3F) << 6 | u32::from(b2 & 0x3F),
        [_, b1, b2, b3] if tail(b2) && tail(b3) => {
            u32::from(lead & 0x07) << 18 | u32::from(b1 & 0x3F) << 12 | u32::from(b2 & 0x3F) << 6 | u32::from(b3 & 0x3F)
        }
        _ => return None,
    };
    char::from_u32(code).map(|c| (c, len))
}

/// A text with a capital sigma, lower-cased whole by `str::to_lowercase` (which gives the final form by the
/// neighbours), but for the characters whose lower-case form the installed classes set: they end a part
/// lowered whole, as they end a sigma's context for the reference (characters its Unicode version does not case).
#[cold]
fn words_with_sigma(text: &str, classes: &CharClasses, runs: &mut WordRuns, out: &mut Tokens) {
    let mut rest = text;
    while !rest.is_empty() {
        let cut = rest
            .char_indices()
            .find(|&(_, c)| classes.lower_override(c).is_some())
            .map_or(rest.len(), |(at, _)| at);
        for c in rest[..cut].to_lowercase().chars() {
            runs.feed(c, classes, out);
        }
        let mut chars = rest[cut..].chars();
        if let Some(c) = chars.next() {
            runs.feed_lowered(c, classes, out);
        }
        rest = chars.as_str();
    }
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

    /// One character, lower-cased here.
    #[inline]
    fn feed_lowered(&mut self, c: char, classes: &CharClasses, out: &mut Tokens) {
        if !classes.is_cased(c) {
            return self.feed(c, classes, out);
        }
        match classes.lower_override(c) {
            Some(lower) => lower.chars().for_each(|l| self.feed(l, classes, out)),
            None => c.to_lowercase().for_each(|l| self.feed(l, classes, out)),
        }
    }

    /// One (already lower-cased) character.
    #[inline]
    fn feed(&mut self, c: char, classes: &CharClasses, out: &mut Tokens) {
        let at = out.buf.len();
        out.buf.push(c);
        let is_word = if c.is_ascii() {
            is_ascii_word_byte(c as u8)
        } else {
            classes.is_word(c)
        };
        self.word(is_word, at, out);
    }

    /// The longest ASCII prefix of `bytes`, lower-cased byte-wise here; returns its length. Its bytes are read 64 at
    /// a time: where they are word bytes and where they are not ASCII, as bit masks, and lower-cased, in one pass
    /// (so ASCII text needs no UTF-8 validation of its own). The spans are written into the list's spare room with a
    /// count kept in a register (a `push` a span kept the list's length in memory, a store and a load a run). Where
    /// the processor has AVX-512 (with VBMI and VBMI2: Ice Lake, Zen 4 and later), a block is one register and its
    /// spans are extracted without a branch per run; elsewhere SSE2 and a loop over the runs.
    fn feed_ascii(&mut self, bytes: &[u8], out: &mut Tokens) -> usize {
        if bytes.first().is_none_or(|b| !b.is_ascii()) {
            return 0; // (text in other scripts comes here at every character)
        }
        #[cfg(target_arch = "x86_64")]
        if has_avx512() {
            // SAFETY: the processor has what `feed_ascii_avx512` is compiled for, checked just above.
            return unsafe { self.feed_ascii_avx512(bytes, out) };
        }
        self.feed_blocks(
            bytes,
            out,
            |block, to| {
                let scan = scan_block(block);
                // SAFETY: `feed_blocks` gives room for 64 bytes at `to`.
                unsafe { std::ptr::copy_nonoverlapping(scan.lowered.as_ptr(), to, 64) };
                (scan.words, scan.other)
            },
            span_pairs,
        )
    }

    /// [`WordRuns::feed_ascii`] compiled for AVX-512: a block scanned in one 64-byte register, and its spans
    /// extracted without a loop over its runs (which mispredicted once a block and took half the tokenizer's time).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx512bw,avx512vbmi,avx512vbmi2,bmi1,popcnt,lzcnt")]
    unsafe fn feed_ascii_avx512(&mut self, bytes: &[u8], out: &mut Tokens) -> usize {
        // SAFETY (the closures'): this function runs only where the processor has these features.
        self.feed_blocks(
            bytes,
            out,
            |block, to| unsafe { scan_avx512(block, to) },
            |starts, ends, at, room| unsafe { span_pairs_avx512(starts, ends, at, room) },
        )
    }

    /// The body of [`WordRuns::feed_ascii`], with `scan(block, to)` reading a block of 1 to 64 bytes: it writes the
    /// block lower-cased to the 64 bytes at `to` (what follows the block, anything) and returns its `words` and
    /// `other` masks, as [`Scan`] holds them; and with `pairs` writing the spans of the runs within a block, as
    /// [`span_pairs`] does.
    // Always inlined: `feed_ascii_avx512` must compile it, and the closures in it, under its own target features.
    #[allow(clippy::inline_always)]
    #[inline(always)]
    fn feed_blocks(
        &mut self,
        bytes: &[u8],
        out: &mut Tokens,
        scan: impl Fn(&[u8], *mut u8) -> (u64, u64),
        pairs: impl Fn(u64, u64, u32, &mut [MaybeUninit<Span>; BLOCK_SPANS]) -> (usize, u64),
    ) -> usize {
        let base = out.buf.len();
        // SAFETY: only the ASCII bytes of each block are kept in the text (`set_len` below): it stays UTF-8.
        let buf = unsafe { out.buf.as_mut_vec() };
        // Each block is written whole (64 bytes) and cut to its ASCII bytes.
        buf.reserve(bytes.len() + 64);
        // The run open now: its byte start, and its characters before `from` (those before this text, for a
        // run that began before it; none for a run that begins here, at `from`). Kept in locals, not in `self`.
        let (mut open, mut start, mut from, mut carried) = match self.run {
            Some((start, chars)) => (true, start, base, chars),
            None => (false, 0, 0, 0),
        };
        // A run ends at a byte that is not a word byte and follows one (or follows the run carried in): at most
        // one end every two bytes, and one more for the carried run; and room for a block's spans past them.
        out.spans.reserve(bytes.len() / 2 + 1 + BLOCK_SPANS);
        let room = out.spans.spare_capacity_mut();
        let mut written = 0;
        let mut before = u64::from(open); // whether the byte before the block is a word byte
        for (b, block) in bytes.chunks(64).enumerate() {
            let at = base + 64 * b;
            // The bytes 16 blocks ahead asked for now (the load of each block stalled the scan: 11% of its samples).
            #[cfg(target_arch = "x86_64")]
            // SAFETY: a prefetch is a hint: an address past the text is never read.
            unsafe {
                use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
                _mm_prefetch::<_MM_HINT_T0>(block.as_ptr().wrapping_add(1024).cast());
            }
            // SAFETY: `reserve` left room for 64 bytes past every block's start.
            let (words, other) = scan(block, unsafe { buf.as_mut_ptr().add(at) });
            let len = (other.trailing_zeros() as usize).min(block.len());
            // SAFETY: the `len` bytes after the text were just written, all ASCII.
            unsafe { buf.set_len(at + len) };
            if len == 0 {
                break;
            }
            let words = words & (u64::MAX >> (64 - len));
            // Where runs start (a word byte after one that is not) and end (the other way round).
            let follows = words << 1 | before;
            let starts = words & !follows;
            let mut ends = !words & follows & (u64::MAX >> (64 - len));
            before = words >> (len - 1) & 1;
            if open && ends != 0 {
                // The run carried into the block ends at its first end. Each span is written, then counted or not:
                // one-letter words are common, and a branch on them mispredicts.
                let end = at + ends.trailing_zeros() as usize;
                ends &= ends - 1;
                room[written].write([start as u32, end as u32]);
                written += usize::from(carried + end - from >= 2);
                open = false;
            }
            // The other runs start and end in the block. A run of one byte (a start right before an end) is no token:
            // it leaves both masks, which then pair up in order.
            let single = starts & ends >> 1;
            let (starts, ends) = (starts & !single, ends & !(single << 1));
            let block_room = (&mut room[written..written + BLOCK_SPANS])
                .try_into()
                .expect("reserved above");
            let (kept, rest) = pairs(starts, ends, at as u32, block_room);
            written += kept;
            if rest != 0 {
                // A run starts and goes on past the block.
                (open, start, carried) = (true, at + rest.trailing_zeros() as usize, 0);
                from = start;
            }
            if len < block.len() {
                break;
            }
        }
        let kept = out.spans.len() + written;
        // SAFETY: the `written` spans after the list's length were initialised above.
        unsafe { out.spans.set_len(kept) };
        let end = out.buf.len();
        // A run still open goes on into what follows: its characters so far.
        self.run = open.then(|| (start, carried + end - from));
        end - base
    }

    fn finish(self, out: &mut Tokens) {
        if let Some((start, chars)) = self.run {
            push_span(&mut out.spans, start, out.buf.len(), chars);
        }
    }
}

/// The most spans [`span_pairs`] writes for one block: a run of two or more bytes and the byte after it, 21 times
/// in 64 bytes, rounded up to two registers' worth.
const BLOCK_SPANS: usize = 32;

/// The runs that start and end within a block at byte `at`: its `starts` and `ends` masks pair up in order (`starts`
/// may have one more, a run that goes on past the block). Writes their spans to `room` from its start; returns their
/// count and the start left over, as a mask (0 when there is none). Two independent chains of bit clearing (one
/// chain of alternating starts and ends was twice as long, with a branch).
#[inline]
fn span_pairs(mut starts: u64, mut ends: u64, at: u32, room: &mut [MaybeUninit<Span>; BLOCK_SPANS]) -> (usize, u64) {
    let mut written = 0;
    while ends != 0 {
        // Wrapping: past 4 GiB of text the positions wrap round (and the text is refused when it is done).
        room[written].write([
            at.wrapping_add(starts.trailing_zeros()),
            at.wrapping_add(ends.trailing_zeros()),
        ]);
        starts &= starts - 1;
        ends &= ends - 1;
        written += 1;
    }
    (written, starts)
}

/// [`span_pairs`] without a loop over the runs: the positions of the starts and of the ends compressed into two
/// registers (AVX-512 VBMI2), and the spans written sixteen at a time.
///
/// # Safety
/// The processor must have AVX-512 F, BW and VBMI2, and POPCNT and LZCNT.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vbmi2,popcnt,lzcnt")]
#[inline]
unsafe fn span_pairs_avx512(
    starts: u64,
    ends: u64,
    at: u32,
    room: &mut [MaybeUninit<Span>; BLOCK_SPANS],
) -> (usize, u64) {
    use std::arch::x86_64::{
        __m128i, _mm512_add_epi32, _mm512_castsi512_si128, _mm512_cvtepu8_epi32, _mm512_extracti32x4_epi32,
        _mm512_loadu_si512, _mm512_maskz_compress_epi8, _mm512_permutex2var_epi32, _mm512_set1_epi32,
        _mm512_storeu_si512,
    };
    const BYTES: [u8; 64] = {
        let mut bytes = [0u8; 64];
        let mut i = 0;
        while i < 64 {
            bytes[i] = i as u8;
            i += 1;
        }
        bytes
    };
    // The lanes of two registers of sixteen starts and sixteen ends, interleaved: the first eight spans, the next.
    const FIRST: [u32; 16] = [0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23];
    const NEXT: [u32; 16] = [8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31];
    let kept = ends.count_ones() as usize;
    // SAFETY: the loads read the 64 bytes of the constants above.
    let (bytes, first, next) = unsafe {
        (
            _mm512_loadu_si512(BYTES.as_ptr().cast()),
            _mm512_loadu_si512(FIRST.as_ptr().cast()),
            _mm512_loadu_si512(NEXT.as_ptr().cast()),
        )
    };
    // Byte `i` of each: the position in the block of the `i`-th start and end.
    let s = _mm512_maskz_compress_epi8(starts, bytes);
    let e = _mm512_maskz_compress_epi8(ends, bytes);
    let offset = _mm512_set1_epi32(at as i32);
    let write = |s: __m128i, e: __m128i, to: *mut MaybeUninit<Span>| {
        let (s, e) = (
            _mm512_add_epi32(_mm512_cvtepu8_epi32(s), offset),
            _mm512_add_epi32(_mm512_cvtepu8_epi32(e), offset),
        );
        // SAFETY: `to` is followed by sixteen spans of `room` (128 bytes), the two stores'.
        unsafe {
            _mm512_storeu_si512(to.cast(), _mm512_permutex2var_epi32(s, first, e));
            _mm512_storeu_si512(to.add(8).cast(), _mm512_permutex2var_epi32(s, next, e));
        }
    };
    write(_mm512_castsi512_si128(s), _mm512_castsi512_si128(e), room.as_mut_ptr());
    if kept > 16 {
        write(
            _mm512_extracti32x4_epi32::<1>(s),
            _mm512_extracti32x4_epi32::<1>(e),
            room[16..].as_mut_ptr(),
        );
    }
    // A start without its end is the last start, a run that goes on past the block.
    let rest = if starts.count_ones() as usize > kept {
        1 << starts.ilog2()
    } else {
        0
    };
    (kept, rest)
}

pub(crate) const ONES: u64 = 0x0101_0101_0101_0101;
pub(crate) const TOPS: u64 = 0x8080_8080_8080_8080;

/// A block of up to 64 bytes as [`WordRuns::feed_ascii`] reads it: bit `i` of `words` set where byte `i` is an ASCII
/// word byte, bit `i` of `other` where it is not ASCII, and the bytes with their ASCII capitals lower-cased (zeros
/// past the end of a short block). Past the first byte that is not ASCII, only `other` is meaningful.
struct Scan {
    words: u64,
    other: u64,
    lowered: [u8; 64],
}

fn scan_block(block: &[u8]) -> Scan {
    let mut padded = [0u8; 64];
    let full: &[u8; 64] = if let Ok(full) = block.try_into() {
        full
    } else {
        padded[..block.len()].copy_from_slice(block);
        &padded
    };
    scan_64(full)
}

/// [`scan_block`] of 64 bytes, sixteen at a time with SSE2 (which every x86-64 processor has).
#[cfg(target_arch = "x86_64")]
fn scan_64(block: &[u8; 64]) -> Scan {
    use std::arch::x86_64::{
        __m128i, _mm_and_si128, _mm_cmpeq_epi8, _mm_cmpgt_epi8, _mm_cmplt_epi8, _mm_loadu_si128, _mm_movemask_epi8,
        _mm_or_si128, _mm_set1_epi8, _mm_storeu_si128,
    };
    let mut scan = Scan {
        words: 0,
        other: 0,
        lowered: [0; 64],
    };
    for (q, sixteen) in block.chunks_exact(16).enumerate() {
        // SAFETY: SSE2 is part of x86-64; the load reads the sixteen bytes of `sixteen` and the store writes sixteen
        // bytes of `scan.lowered` from `16 * q` (q < 4), both unaligned.
        let (words, other) = unsafe {
            #[allow(clippy::cast_ptr_alignment)] // unaligned loads and stores
            let x = _mm_loadu_si128(sixteen.as_ptr().cast::<__m128i>());
            // Signed comparisons: a byte that is not ASCII is negative, within no range.
            let within = |v, lo: u8, hi: u8| {
                _mm_and_si128(
                    _mm_cmpgt_epi8(v, _mm_set1_epi8((lo - 1) as i8)),
                    _mm_cmplt_epi8(v, _mm_set1_epi8((hi + 1) as i8)),
                )
            };
            let lowered = _mm_or_si128(x, _mm_and_si128(within(x, b'A', b'Z'), _mm_set1_epi8(0x20)));
            #[allow(clippy::cast_ptr_alignment)]
            _mm_storeu_si128(scan.lowered.as_mut_ptr().add(16 * q).cast::<__m128i>(), lowered);
            let letter = within(lowered, b'a', b'z');
            let digit = within(x, b'0', b'9');
            let underscore = _mm_cmpeq_epi8(x, _mm_set1_epi8(b'_' as i8));
            let words = _mm_movemask_epi8(_mm_or_si128(_mm_or_si128(letter, digit), underscore)) as u16;
            (words, _mm_movemask_epi8(x) as u16)
        };
        scan.words |= u64::from(words) << (16 * q);
        scan.other |= u64::from(other) << (16 * q);
    }
    scan
}

/// Whether the processor has what [`WordRuns::feed_ascii_avx512`] is compiled for (the standard library caches
/// each feature's answer).
#[cfg(target_arch = "x86_64")]
fn has_avx512() -> bool {
    #[cfg(test)]
    if tests::PORTABLE.get() {
        return false;
    }
    std::arch::is_x86_feature_detected!("avx512f")
        && std::arch::is_x86_feature_detected!("avx512bw")
        && std::arch::is_x86_feature_detected!("avx512vbmi")
        && std::arch::is_x86_feature_detected!("avx512vbmi2")
        && std::arch::is_x86_feature_detected!("bmi1")
        && std::arch::is_x86_feature_detected!("popcnt")
        && std::arch::is_x86_feature_detected!("lzcnt")
}

/// [`scan_block`] of a block of 1 to 64 bytes in one AVX-512 register: its `words` and `other` masks, the block
/// lower-cased written to the 64 bytes at `to` (zeros past a short block). One look-up in a table of the 128 ASCII
/// bytes (a two-register byte permutation, AVX-512 VBMI) gives each byte lower-cased, with its top bit set where it
/// is a word byte (bytes that are not ASCII look up their low seven bits: past the ASCII, nothing is kept).
///
/// # Safety
/// The processor must have AVX-512 F, BW and VBMI, and `to` must be valid for writing 64 bytes.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vbmi")]
#[inline]
unsafe fn scan_avx512(block: &[u8], to: *mut u8) -> (u64, u64) {
    use std::arch::x86_64::{
        _mm512_and_si512, _mm512_loadu_si512, _mm512_maskz_loadu_epi8, _mm512_movepi8_mask, _mm512_permutex2var_epi8,
        _mm512_set1_epi8, _mm512_storeu_si512,
    };
    /// Each ASCII byte lower-cased, its top bit set where it is a word byte.
    const CLASSES: [u8; 128] = {
        let mut table = [0u8; 128];
        let mut b = 0;
        while b < 128 {
            let lower = (b as u8).to_ascii_lowercase();
            table[b] = lower | if ASCII_WORD[b] { 0x80 } else { 0 };
            b += 1;
        }
        table
    };
    debug_assert!((1..=64).contains(&block.len()));
    // A masked load reads the block's bytes only (the others are zeros), so a short block needs no copy.
    let x = unsafe { _mm512_maskz_loadu_epi8(u64::MAX >> (64 - block.len()), block.as_ptr().cast()) };
    // SAFETY: the loads read the 128 bytes of the table.
    let (first, second) = unsafe {
        (
            _mm512_loadu_si512(CLASSES.as_ptr().cast()),
            _mm512_loadu_si512(CLASSES.as_ptr().add(64).cast()),
        )
    };
    let classes = _mm512_permutex2var_epi8(first, x, second);
    let lowered = _mm512_and_si512(classes, _mm512_set1_epi8(0x7f));
    unsafe { _mm512_storeu_si512(to.cast(), lowered) };
    (_mm512_movepi8_mask(classes), _mm512_movepi8_mask(x))
}

/// [`scan_block`] of 64 bytes, eight at a time in a 64-bit word.
#[cfg(any(test, not(target_arch = "x86_64")))]
fn scan_words(block: &[u8; 64]) -> Scan {
    let mut scan = Scan {
        words: 0,
        other: 0,
        lowered: [0; 64],
    };
    for (w, eight) in block.chunks_exact(8).enumerate() {
        let x = u64::from_le_bytes(eight.try_into().unwrap_or_default());
        // The bytes' top bits cleared: the arithmetic of `in_range` is exact for ASCII bytes, and the bytes from
        // the first that is not ASCII on are not read.
        let ascii = x & !TOPS;
        scan.words |= u64::from(gather_tops(word_bytes(ascii))) << (8 * w);
        scan.other |= u64::from(gather_tops(x & TOPS)) << (8 * w);
        let lowered = ascii | in_range(ascii, b'A', b'Z') >> 2;
        scan.lowered[8 * w..8 * w + 8].copy_from_slice(&lowered.to_le_bytes());
    }
    scan
}

#[cfg(not(target_arch = "x86_64"))]
fn scan_64(block: &[u8; 64]) -> Scan {
    scan_words(block)
}

/// `text` (ASCII) lower-cased in place, eight bytes at a time.
pub(crate) fn lower_ascii(text: &mut str) {
    // SAFETY: ASCII letters are changed into ASCII letters only: the text stays the same valid UTF-8.
    let bytes = unsafe { text.as_bytes_mut() };
    let mut words = bytes.chunks_exact_mut(8);
    for eight in &mut words {
        let x = u64::from_le_bytes((&*eight).try_into().unwrap_or_default());
        let upper = in_range(x, b'A', b'Z');
        eight.copy_from_slice(&(x | upper >> 2).to_le_bytes());
    }
    words.into_remainder().make_ascii_lowercase();
}

/// Each byte's top bit set where the byte (ASCII) is within `lo..=hi`: no carry leaves a byte.
pub(crate) fn in_range(x: u64, lo: u8, hi: u8) -> u64 {
    (x + (0x80 - u64::from(lo)) * ONES) & !(x + (0x7f - u64::from(hi)) * ONES) & TOPS
}

/// Each byte's top bit set where the byte (ASCII) is a word byte: a letter, a digit or `_`.
#[cfg(any(test, not(target_arch = "x86_64")))]
fn word_bytes(x: u64) -> u64 {
    let letter = in_range(x | (0x20 * ONES), b'a', b'z');
    let digit = in_range(x, b'0', b'9');
    let not_underscore = x ^ (u64::from(b'_') * ONES);
    let underscore = !(((not_underscore & (0x7f * ONES)) + 0x7f * ONES) | not_underscore) & TOPS;
    letter | digit | underscore
}

/// The top bits of the eight bytes as the bits of one byte (bit `i` from byte `i`).
#[cfg(any(test, not(target_arch = "x86_64")))]
fn gather_tops(tops: u64) -> u8 {
    ((tops >> 7).wrapping_mul(0x0102_0408_1020_4080) >> 56) as u8
}

/// Adds the run `start..end` of `chars` characters as a token if it has two or more. Without a branch on the
/// count: the span is written, then kept or not (one-letter words are common, and a branch on them mispredicts).
fn push_span(spans: &mut Vec<Span>, start: usize, end: usize, chars: usize) {
    spans.push([start as u32, end as u32]);
    spans.truncate(spans.len() - usize::from(chars < 2));
}

fn whitespace(text: &str, out: &mut Tokens) {
    let mut start: Option<usize> = None;
    for c in text.chars() {
        if c.is_ascii_punctuation() {
            continue;
        }
        if is_python_space(c) {
            if let Some(s) = start.take() {
                out.spans.push([s as u32, out.buf.len() as u32]);
            }
            continue;
        }
        start.get_or_insert(out.buf.len());
        out.buf.push(c.to_ascii_lowercase());
    }
    if let Some(s) = start {
        out.spans.push([s as u32, out.buf.len() as u32]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::cell::Cell;

    thread_local! {
        /// Set by a test to tokenize with the portable blocks (SSE2 and a loop over the runs) on a processor that has
        /// AVX-512.
        pub(super) static PORTABLE: Cell<bool> = const { Cell::new(false) };
    }

    #[test]
    fn characters_are_checked_as_the_standard_library_does() {
        // Every lead byte with every second byte, and third and fourth bytes around each range's edges.
        let edges = [0x00, 0x41, 0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf, 0xc0, 0xf4, 0xff];
        for lead in 0x80..=0xffu8 {
            for second in 0..=0xffu8 {
                for third in edges {
                    for fourth in edges {
                        let bytes = [lead, second, third, fourth];
                        let expected = match std::str::from_utf8(&bytes) {
                            Ok(text) => text.chars().next(),
                            Err(e) => std::str::from_utf8(&bytes[..e.valid_up_to()]).unwrap().chars().next(),
                        };
                        let got = next_char(&bytes);
                        assert_eq!(got.map(|(c, _)| c), expected, "{bytes:x?}");
                        assert_eq!(got.map(|(_, len)| len), expected.map(char::len_utf8), "{bytes:x?}");
                        // Cut short, a sequence is not a character.
                        for cut in 1..expected.map_or(1, char::len_utf8) {
                            assert_eq!(next_char(&bytes[..cut]), None, "{bytes:x?} cut at {cut}");
                        }
                    }
                }
            }
        }
    }

    /// The tokens of `text`, normalised text and spans, by the blocks the processor has and by the portable ones.
    fn both_paths(text: &str) -> [(String, Vec<Span>); 2] {
        [false, true].map(|portable| {
            PORTABLE.set(portable);
            let mut tokens = Tokens::default();
            Tokenizer::Words.tokenize_into(text, &mut tokens).unwrap();
            PORTABLE.set(false);
            (tokens.normalized().to_owned(), tokens.spans().to_vec())
        })
    }

    /// Text that crosses the tokenizer's cases: one- and two-letter words packed to more than sixteen tokens a block,
    /// runs across blocks, capitals, digits, `_`, punctuation, and characters that are not ASCII (the sigma too).
    fn mixed_text() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            4 => "[a-zA-Z]{1,3}",
            2 => "[ .,_0-9]{1,2}",
            1 => "[a-z]{60,70}",
            1 => "(ab ){10,30}",
            1 => "[\\u{e9}\\u{2019}\\u{3a3}\\u{130}\\u{4e2d}]",
        ];
        proptest::collection::vec(piece, 0..60).prop_map(|pieces| pieces.join(""))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn avx512_and_portable_blocks_tokenize_alike(text in mixed_text()) {
            let [native, portable] = both_paths(&text);
            prop_assert_eq!(native, portable);
        }
    }

    #[test]
    fn a_text_longer_than_the_positions_reach_is_refused() {
        // Spans hold 32-bit positions: past 4 GiB of normalised text they wrapped round, and the tokens were the
        // text's start again. The limit, made small here: a text within it is tokenized, a longer one is refused
        // with no token left; so is a text that grows past it when lower-cased (U+0130: 2 bytes, then 3).
        let mut tokens = Tokens::default();
        for t in [Tokenizer::Words, Tokenizer::Whitespace] {
            assert_eq!(t.tokenize_within(b"ab cd", &mut tokens, 5), Ok(()));
            assert_eq!(tokens.iter().collect::<Vec<_>>(), ["ab", "cd"]);
            assert_eq!(
                t.tokenize_within(b"ab cdef", &mut tokens, 5),
                Err(Untokenizable::TooLong)
            );
            assert!(tokens.is_empty());
            assert_eq!(
                t.tokenize_within(b"ab \xff", &mut tokens, 5),
                Err(Untokenizable::NotUtf8)
            );
        }
        let (short, long) = ("aİb".as_bytes(), "aİbİ".as_bytes());
        assert_eq!(Tokenizer::Words.tokenize_within(short, &mut tokens, 5), Ok(()));
        assert_eq!(tokens.normalized(), "ai\u{307}b");
        assert_eq!(long.len(), 6);
        assert_eq!(
            Tokenizer::Words.tokenize_within(long, &mut tokens, 7),
            Err(Untokenizable::TooLong)
        );
        assert_eq!(
            Untokenizable::TooLong.error(3, 5_000_000_000).to_string(),
            "text 3 is too long: 5000000000 bytes, over the 4 GiB a text may have once lower-cased"
        );
    }

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
    fn blocks_are_scanned_sixty_four_sixteen_and_eight_bytes_at_a_time() {
        let check = |block: &[u8]| {
            let scan = scan_block(block);
            let ascii = block.iter().position(|b| !b.is_ascii()).unwrap_or(block.len());
            assert_eq!(
                scan.other.trailing_zeros() as usize,
                if ascii < block.len() { ascii } else { 64 }
            );
            for (i, &c) in block[..ascii].iter().enumerate() {
                assert_eq!(scan.words >> i & 1 == 1, is_ascii_word_byte(c), "{c}");
                assert_eq!(scan.lowered[i], c.to_ascii_lowercase(), "{c}");
            }
            #[cfg(target_arch = "x86_64")]
            if has_avx512() && !block.is_empty() {
                let mut lowered = [0u8; 64];
                // SAFETY: the processor has AVX-512 (checked); `lowered` has room for 64 bytes.
                let (words, other) = unsafe { scan_avx512(block, lowered.as_mut_ptr()) };
                let below = if ascii == 0 { 0 } else { u64::MAX >> (64 - ascii) };
                // Nothing past a short block is read: its bytes (a capital and a byte that is not ASCII, see
                // below) would show as words, other characters or lower-cased letters.
                let len = block.len();
                assert_eq!(words.checked_shr(len as u32).unwrap_or(0), 0, "{len}");
                assert_eq!(other.checked_shr(len as u32).unwrap_or(0), 0, "{len}");
                assert!(lowered[len..].iter().all(|&b| b == 0), "{len}");
                assert_eq!(other.trailing_zeros(), scan.other.trailing_zeros());
                assert_eq!(words & below, scan.words & below);
                assert_eq!(lowered[..ascii], scan.lowered[..ascii]);
            }
            if let Ok(full) = <&[u8; 64]>::try_from(block) {
                let words = scan_words(full);
                let below = if ascii == 0 { 0 } else { u64::MAX >> (64 - ascii) };
                assert_eq!(words.other.trailing_zeros(), scan.other.trailing_zeros());
                assert_eq!(words.words & below, scan.words & below);
                assert_eq!(words.lowered[..ascii], scan.lowered[..ascii]);
            }
        };
        for b in 0..=255u8 {
            check(&[b, b'a', b' ', b, b'_', b'Z', b'9', b]);
            let all: [u8; 64] = std::array::from_fn(|i| (b as usize + 37 * i) as u8 & 0x7f);
            check(&all);
            let mut late = all;
            late[40] = b | 0x80;
            check(&late);
        }
        // Short blocks followed by a capital and a byte that is not ASCII, which a read past the block would see.
        for len in [1usize, 7, 8, 9, 63, 64] {
            let mut text: Vec<u8> = (0..len).map(|i| if i % 3 == 0 { b' ' } else { b'X' }).collect();
            text.extend([b'Z', 0xc3, b'Q', 0xa9]);
            check(&text[..len]);
            let scan = scan_block(&text[..len]);
            assert!(scan.lowered[len..].iter().all(|&b| b == 0), "{len}");
            assert_eq!(scan.other.checked_shr(len as u32).unwrap_or(0), 0, "{len}");
        }
    }

    #[test]
    fn runs_cross_blocks_and_other_characters() {
        // Runs that end on a block's last byte, go on across blocks, or on into other characters.
        let long = "x".repeat(130);
        for text in [
            format!("{} ab", "y".repeat(63)),
            format!("{} ab", "y".repeat(64)),
            format!("{long}\u{e9}Z {long}"),
            format!("a\u{e9}{}\u{e9}b c\u{e9}", "q".repeat(62)),
            format!("{}\u{e9}", " ".repeat(63)),
        ] {
            let expected: Vec<String> = text
                .to_lowercase()
                .split(|c: char| !is_word_char(c))
                .filter(|t| t.chars().count() >= 2)
                .map(str::to_owned)
                .collect();
            assert_eq!(Tokenizer::Words.tokenize(&text), expected, "{text:?}");
        }
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
    fn classes_of_another_unicode_version_override_the_native_ones() {
        // An older version: 'é' is not a word character, U+A7CB is unassigned (lower-cases to itself), and
        // 'Ä' lower-cases to 'x'.
        let words = [
            (0x30, 0x3a),
            (0x41, 0x5b),
            (0x5f, 0x60),
            (0x61, 0x7b),
            (0xc0, 0xe9),
            (0xea, 0x100),
        ];
        let mut lowercase: Vec<(u32, String)> = (0x41..0x5b)
            .map(|cp| (cp, char::from_u32(cp + 32).unwrap().to_string()))
            .collect();
        lowercase.push((0xc4, "x".to_owned()));
        lowercase.push((0x130, "i\u{307}".to_owned()));
        let classes = CharClasses::from_definitions(&words, &lowercase).unwrap();
        assert!(classes.is_word('\u{e8}') && !classes.is_word('\u{e9}') && !classes.is_word('\u{4e00}'));
        assert_eq!(classes.lower_override('\u{c4}'), Some("x"));
        assert_eq!(classes.lower_override('\u{a7cb}'), Some("\u{a7cb}"));
        assert_eq!(classes.lower_override('\u{130}'), None); // as char::to_lowercase
        assert_eq!(classes.lower_override('A'), None);
        // Cased: what lower-cases to something else under these classes, whatever this crate's tables say.
        assert!(classes.is_cased('A') && classes.is_cased('\u{c4}') && classes.is_cased('\u{130}'));
        assert!(!classes.is_cased('a') && !classes.is_cased('\u{a7cb}') && !classes.is_cased('\u{2019}'));
        assert!(!classes.is_cased('\u{c9}')); // not in their lower-case list: lower-cases to itself there
        let native = CharClasses::native();
        assert!(native.is_cased('\u{c9}') && native.is_cased('\u{a7cb}') && native.is_cased('\u{3a3}'));
        assert!(!native.is_cased('\u{2019}') && !native.is_cased('\u{4e00}') && !native.is_cased('\u{e9}'));
        assert!(CharClasses::from_definitions(&[(5, 0x11_0001)], &[]).is_err());
    }

    #[test]
    fn names_round_trip() {
        for t in [Tokenizer::Words, Tokenizer::Whitespace] {
            assert_eq!(Tokenizer::from_name(t.name()), Some(t));
        }
        assert_eq!(Tokenizer::from_name("bpe"), None);
    }
}
