//! Benchmark contamination matching: an index of benchmark n-grams and a parallel matcher.
//!
//! [`BenchIndex`] holds every distinct n-gram of one or more benchmarks (a *group*), the benchmark
//! rows it occurs in (its *postings*) and the tokens themselves. [`BenchIndex::match_rows`] finds, for
//! each training row, its distinct n-grams and the groups they match. A hash only proposes a
//! candidate: the tokens are compared before a match counts, so a collision can never flag a row.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};
use std::ops::Range;

use crate::filter::Filter;
use crate::ngram::{ngram_hashes, TokenHash, MAX_N};
use crate::rows::{check_bounds, map_chunks, ByteRows};
use crate::text::{Tokenizer, Tokens};
use crate::Error;

const NONE: u32 = u32::MAX;

/// The hashes are already uniform: use them as their own hash-map keys.
#[derive(Default)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

type HashIndex = HashMap<u64, u32, BuildHasherDefault<PassThrough>>;

/// One distinct benchmark n-gram.
#[derive(Clone, Copy, Debug)]
struct Group {
    /// Index in `BenchIndex::tokens` of its first token.
    first_token: u32,
    /// Next group with the same hash (a collision: see [`crate::ngram::CYCLIC_MAX_N`]), or `NONE`.
    next: u32,
    /// Range of its postings in `BenchIndex::postings`.
    postings: (u32, u32),
}

/// A benchmark row: which benchmark and which 0-based row of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct BenchRow {
    pub bench: u32,
    pub row: u32,
}

/// The n-grams of a set of benchmarks, ready to match training rows against.
#[derive(Debug)]
pub struct BenchIndex {
    tokenizer: Tokenizer,
    n: usize,
    /// Normalised tokens of all benchmark rows, concatenated.
    arena: String,
    /// Byte spans of the tokens in `arena`.
    tokens: Vec<(u32, u32)>,
    heads: HashIndex,
    /// The groups' hashes: most training n-grams miss, and this answers them without touching `heads`.
    filter: Filter,
    groups: Vec<Group>,
    postings: Vec<BenchRow>,
    /// Rows per benchmark, as given to [`BenchIndex::build`].
    bench_rows: Vec<u32>,
}

/// Which rows' distinct n-grams [`BenchIndex::match_rows`] counts. Counting took 5-16% of the matching on real
/// prompts (docs/benchmarks.md), and flags and evidence need the count of matched rows only.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counts {
    /// Every row's.
    All,
    /// Those of the rows that matched a group, and whether the others have any n-gram (`Some(0)` when they have
    /// none, `None` when their count was not taken).
    Matched,
}

/// What one training row matched: a row of [`Matches`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RowMatch<'a> {
    /// Distinct n-grams of the row (over all its texts); `None` when not counted ([`Counts::Matched`]).
    pub n_ngrams: Option<u32>,
    /// Distinct matched groups, in order of first occurrence in the row's texts.
    pub matched: &'a [u32],
}

impl RowMatch<'_> {
    /// Fraction of the row's distinct n-grams found in the benchmarks (0 when it has none or matched none).
    pub fn overlap(&self) -> f64 {
        match self.n_ngrams {
            Some(n) if n > 0 => self.matched.len() as f64 / f64::from(n),
            _ => 0.0,
        }
    }

    /// A row is flagged when it matched at least one n-gram and its overlap reaches `threshold`.
    pub fn is_flagged(&self, threshold: f64) -> bool {
        !self.matched.is_empty() && self.overlap() >= threshold
    }
}

/// What training rows matched, column by column: the form the bindings read, built without a value per row on
/// the heap (a `Vec` of per-row results and its copy took 70 MB of fresh pages a million rows). It stays in parts of
/// consecutive rows, one a worker's range: joining them copied 16 MB a million rows on one thread, where the bindings
/// read every row once anyway.
#[derive(Clone, Debug)]
pub struct Matches {
    parts: Vec<MatchPart>,
}

/// Consecutive rows of [`Matches`].
#[derive(Clone, Debug)]
struct MatchPart {
    /// Each row's [`RowMatch::n_ngrams`].
    n_ngrams: Vec<Option<u32>>,
    /// Row `r`'s groups are `groups[offsets[r]..offsets[r + 1]]` (one more offset than the rows).
    offsets: Vec<usize>,
    /// Every row's [`RowMatch::matched`], one row after another.
    groups: Vec<u32>,
}

impl MatchPart {
    /// No rows yet, room for `rows`.
    fn with_capacity(rows: usize) -> Self {
        let mut offsets = Vec::with_capacity(rows + 1);
        offsets.push(0);
        MatchPart {
            n_ngrams: Vec::with_capacity(rows),
            offsets,
            groups: Vec::new(),
        }
    }

    fn push(&mut self, n_ngrams: Option<u32>) {
        self.n_ngrams.push(n_ngrams);
        self.offsets.push(self.groups.len());
    }

    #[inline]
    fn row(&self, r: usize) -> RowMatch<'_> {
        RowMatch {
            n_ngrams: self.n_ngrams[r],
            matched: &self.groups[self.offsets[r]..self.offsets[r + 1]],
        }
    }
}

impl Matches {
    pub fn len(&self) -> usize {
        self.parts.iter().map(|p| p.n_ngrams.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Row `r` (panics past the last).
    pub fn row(&self, mut r: usize) -> RowMatch<'_> {
        for part in &self.parts {
            if r < part.n_ngrams.len() {
                return part.row(r);
            }
            r -= part.n_ngrams.len();
        }
        panic!("row out of range")
    }

    /// Every row, in order.
    pub fn rows(&self) -> impl Iterator<Item = RowMatch<'_>> {
        self.parts.iter().flat_map(|p| (0..p.n_ngrams.len()).map(|r| p.row(r)))
    }

    /// Every row's matched groups, one row after another (Arrow's list values of [`Matches::rows`]).
    pub fn into_groups(mut self) -> Vec<u32> {
        if self.parts.len() == 1 {
            return self.parts.pop().map(|p| p.groups).unwrap_or_default();
        }
        self.parts.into_iter().flat_map(|p| p.groups).collect()
    }
}

/// Equal rows (however they are parted).
impl PartialEq for Matches {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.rows().eq(other.rows())
    }
}

/// Scratch buffers of one worker.
#[derive(Default)]
struct Scratch {
    tokens: Tokens,
    token_hashes: Vec<u64>,
    hashes: Vec<u64>,
    row_hashes: Vec<u64>,
    distinct: Vec<u64>,
    /// Positions in `hashes` of the n-grams that passed the filter.
    candidates: Vec<u32>,
    /// The groups the row has matched so far: one lookup a match, however many (a row that copies a whole
    /// benchmark text matches thousands, and a scan of the list made it quadratic).
    seen: HashSet<u32>,
}

/// Number of distinct values in `hashes`, with an open-addressing set in `table` (reused scratch).
/// 0 marks an empty slot, so a hash of 0 is counted as 1: a rare event (see [`crate::ngram::CYCLIC_MAX_N`]) that
/// only shifts a count.
fn count_distinct(hashes: &[u64], table: &mut Vec<u64>) -> usize {
    let size = (hashes.len() * 2).next_power_of_two().max(16);
    if table.len() == size {
        table.fill(0);
    } else {
        table.clear();
        table.resize(size, 0);
    }
    let mask = size - 1;
    let mut distinct = 0;
    for &h in hashes {
        let key = h.max(1);
        let mut slot = (key as usize) & mask;
        loop {
            match table[slot] {
                0 => {
                    table[slot] = key;
                    distinct += 1;
                    break;
                }
                k if k == key => break,
                _ => slot = (slot + 1) & mask,
            }
        }
    }
    distinct
}

fn check_n(n: usize) -> Result<(), Error> {
    if (1..=MAX_N).contains(&n) {
        Ok(())
    } else {
        Err(Error::InvalidNgram(n))
    }
}

impl BenchIndex {
    /// Indexes the n-grams of `benches[b][row]` for every benchmark `b`. `None` and texts with fewer
    /// than `n` tokens contribute nothing.
    pub fn build(tokenizer: Tokenizer, n: usize, benches: &[Vec<Option<&str>>]) -> Result<Self, Error> {
        check_n(n)?;
        // Benchmarks and their rows are numbered with 32 bits in the postings.
        if benches.len() > u32::MAX as usize || benches.iter().any(|b| b.len() > u32::MAX as usize) {
            return Err(Error::BenchmarkTooLarge);
        }
        let mut index = BenchIndex {
            tokenizer,
            n,
            arena: String::new(),
            tokens: Vec::new(),
            heads: HashIndex::default(),
            filter: Filter::new(0, [].iter()),
            groups: Vec::new(),
            postings: Vec::new(),
            bench_rows: benches.iter().map(|b| b.len() as u32).collect(),
        };
        // Room for what the text gives, estimated from its size (the maps and lists grown by doubling were a fifth of
        // the build: rehashing, copies and the pages of each new size).
        let bytes: usize = benches.iter().flatten().flatten().map(|t| t.len()).sum();
        index.arena.reserve(bytes);
        index.tokens.reserve(bytes / 4);
        index.heads.reserve(bytes / 16);
        index.groups.reserve(bytes / 16);
        let mut occurrences: Vec<(u32, BenchRow)> = Vec::with_capacity(bytes / 4);
        let (mut scratch, mut text_groups) = (Scratch::default(), Vec::new());
        for (bench, texts) in benches.iter().enumerate() {
            for (row, text) in texts.iter().enumerate() {
                let Some(text) = text else { continue };
                let at = BenchRow {
                    bench: bench as u32,
                    row: row as u32,
                };
                // The text's groups once each (a text may repeat an n-gram).
                text_groups.clear();
                index.add_text(text, at, &mut scratch, &mut text_groups)?;
                text_groups.sort_unstable();
                text_groups.dedup();
                occurrences.extend_from_slice(&text_groups);
            }
        }
        // Postings in (group, benchmark, row) order. The occurrences come in (benchmark, row) order: placed group by
        // group in that order (a counting sort, where a comparison sort of them all took a third of the build), each
        // group's rows stay in order.
        let mut starts = vec![0u32; index.groups.len() + 1];
        for &(g, _) in &occurrences {
            starts[g as usize + 1] += 1;
        }
        for g in 0..index.groups.len() {
            starts[g + 1] += starts[g];
        }
        let mut next = starts.clone();
        index.postings = vec![BenchRow { bench: 0, row: 0 }; occurrences.len()];
        for &(g, at) in &occurrences {
            index.postings[next[g as usize] as usize] = at;
            next[g as usize] += 1;
        }
        for (group, ends) in index.groups.iter_mut().zip(starts.windows(2)) {
            group.postings = (ends[0], ends[1]);
        }
        index.filter = Filter::new(index.heads.len(), index.heads.keys());
        Ok(index)
    }

    fn add_text(
        &mut self,
        text: &str,
        at: BenchRow,
        scratch: &mut Scratch,
        occurrences: &mut Vec<(u32, BenchRow)>,
    ) -> Result<(), Error> {
        self.tokenizer
            .tokenize_into(text, &mut scratch.tokens)
            .map_err(|_| Error::BenchmarkTooLarge)?;
        ngram_hashes(
            &scratch.tokens,
            self.n,
            TokenHash::Local,
            &mut scratch.token_hashes,
            &mut scratch.hashes,
        );
        if scratch.hashes.is_empty() {
            return Ok(());
        }
        let first = self.tokens.len();
        for token in scratch.tokens.iter() {
            let start = self.arena.len();
            self.arena.push_str(token);
            if self.arena.len() > u32::MAX as usize || self.tokens.len() >= NONE as usize {
                return Err(Error::BenchmarkTooLarge);
            }
            self.tokens.push((start as u32, self.arena.len() as u32));
        }
        for (i, &h) in scratch.hashes.iter().enumerate() {
            let first_token = (first + i) as u32;
            let group = if let Some(g) = self.find(h, |k, token| self.bench_token(first_token as usize + k) == token) {
                g
            } else {
                let g = self.groups.len() as u32;
                let next = self.heads.insert(h, g).unwrap_or(NONE);
                self.groups.push(Group {
                    first_token,
                    next,
                    postings: (0, 0),
                });
                g
            };
            occurrences.push((group, at));
        }
        Ok(())
    }

    fn bench_token(&self, i: usize) -> &str {
        let (s, e) = self.tokens[i];
        &self.arena[s as usize..e as usize]
    }

    /// The group among those with hash `h` whose tokens `0..n` are those of the n-gram: `is(k, token)` says
    /// whether the n-gram's `k`-th token is `token`.
    fn find(&self, h: u64, is: impl Fn(usize, &str) -> bool) -> Option<u32> {
        let mut g = *self.heads.get(&h)?;
        while g != NONE {
            let group = self.groups[g as usize];
            let first = group.first_token as usize;
            if (0..self.n).all(|k| is(k, self.bench_token(first + k))) {
                return Some(g);
            }
            g = group.next;
        }
        None
    }

    /// The tokenizer of the index.
    pub fn tokenizer(&self) -> Tokenizer {
        self.tokenizer
    }

    /// The n of the index.
    pub fn n(&self) -> usize {
        self.n
    }

    /// Number of distinct benchmark n-grams.
    pub fn n_groups(&self) -> usize {
        self.groups.len()
    }

    /// Number of rows of each benchmark.
    pub fn bench_rows(&self) -> &[u32] {
        &self.bench_rows
    }

    /// The text of a group: its tokens joined by single spaces.
    pub fn ngram_text(&self, group: u32) -> Option<String> {
        let g = self.groups.get(group as usize)?;
        let first = g.first_token as usize;
        Some(
            (first..first + self.n)
                .map(|i| self.bench_token(i))
                .collect::<Vec<_>>()
                .join(" "),
        )
    }

    /// The benchmark rows a group occurs in, in (benchmark, row) order.
    pub fn postings(&self, group: u32) -> Option<&[BenchRow]> {
        let g = self.groups.get(group as usize)?;
        Some(&self.postings[g.postings.0 as usize..g.postings.1 as usize])
    }

    /// Matches training rows. Row `r` consists of `texts[bounds[r]..bounds[r + 1]]`; null texts are
    /// skipped. Groups with `ignore[g] == true` never match (`ignore` may be empty); `counts` says whose distinct
    /// n-grams are counted. Results are the same for any number of `threads` (0 = rayon's default). The texts are
    /// checked to be UTF-8 as they are matched, by the workers: the first that is not is the error.
    pub fn match_rows<R: ByteRows + ?Sized>(
        &self,
        texts: &R,
        bounds: &[usize],
        ignore: &[bool],
        counts: Counts,
        threads: usize,
    ) -> Result<Matches, Error> {
        check_bounds(texts.len(), bounds)?;
        if !ignore.is_empty() && ignore.len() != self.groups.len() {
            return Err(Error::InvalidIgnoreMask {
                expected: self.groups.len(),
                got: ignore.len(),
            });
        }
        let parts = map_chunks(bounds.len() - 1, threads, |rows| {
            let mut part = MatchPart::with_capacity(rows.len());
            let mut scratch = Scratch::default();
            for r in rows {
                let n_ngrams = self.match_row(
                    texts,
                    bounds[r]..bounds[r + 1],
                    ignore,
                    counts,
                    &mut scratch,
                    &mut part.groups,
                )?;
                part.push(n_ngrams);
            }
            Ok(part)
        })?;
        Ok(Matches {
            parts: parts.into_iter().collect::<Result<_, Error>>()?,
        })
    }

    /// Appends the row's distinct matched groups to `matched`, in order of first occurrence; returns its count of
    /// distinct n-grams ([`RowMatch::n_ngrams`]).
    fn match_row<R: ByteRows + ?Sized>(
        &self,
        texts: &R,
        range: Range<usize>,
        ignore: &[bool],
        counts: Counts,
        s: &mut Scratch,
        matched: &mut Vec<u32>,
    ) -> Result<Option<u32>, Error> {
        let start = matched.len();
        // A row of one text (most rows) counts its distinct n-grams in place; others gather theirs first.
        let single = range.len() == 1;
        s.hashes.clear();
        s.row_hashes.clear();
        s.seen.clear();
        for t in range {
            let Some(bytes) = texts.row(t) else { continue };
            self.tokenizer
                .tokenize_utf8_into(bytes, &mut s.tokens)
                .map_err(|fault| fault.error(t, bytes.len()))?;
            ngram_hashes(&s.tokens, self.n, TokenHash::Local, &mut s.token_hashes, &mut s.hashes);
            if !single {
                s.row_hashes.extend_from_slice(&s.hashes);
            }
            self.filter.candidates(&s.hashes, &mut s.candidates);
            for &i in &s.candidates {
                let (i, tokens) = (i as usize, &s.tokens);
                let Some(g) = self.find(s.hashes[i], |k, token| tokens.get(i + k) == token) else {
                    continue;
                };
                if ignore.get(g as usize).copied().unwrap_or(false) || !s.seen.insert(g) {
                    continue;
                }
                matched.push(g);
            }
        }
        let hashes = if single { &s.hashes } else { &s.row_hashes };
        Ok(match counts {
            Counts::Matched if matched.len() == start => hashes.is_empty().then_some(0),
            _ => Some(count_distinct(hashes, &mut s.distinct) as u32),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(n: usize, benches: &[&[&str]]) -> BenchIndex {
        let benches: Vec<Vec<Option<&str>>> = benches.iter().map(|b| b.iter().map(|t| Some(*t)).collect()).collect();
        BenchIndex::build(Tokenizer::Words, n, &benches).unwrap()
    }

    fn match_texts(index: &BenchIndex, rows: &[&str], threads: usize) -> Matches {
        let texts: Vec<Option<&str>> = rows.iter().map(|t| Some(*t)).collect();
        let bounds: Vec<usize> = (0..=rows.len()).collect();
        index
            .match_rows(&texts[..], &bounds, &[], Counts::All, threads)
            .unwrap()
    }

    #[test]
    fn finds_shared_ngram_and_its_postings() {
        let idx = index(
            3,
            &[
                &["the quick brown fox jumps", "nothing in common here"],
                &["a QUICK brown fox!"],
            ],
        );
        let m = match_texts(&idx, &["I saw the quick brown fox today", "quick brown dog"], 1);
        let (m0, m1) = (m.row(0), m.row(1));
        assert_eq!(m0.n_ngrams, Some(4)); // "I" is a one-character token
        assert_eq!(m0.matched.len(), 2);
        assert!(m0.is_flagged(0.0));
        assert!(m0.is_flagged(0.5));
        assert!(!m0.is_flagged(0.51));
        assert_eq!(idx.ngram_text(m0.matched[0]).unwrap(), "the quick brown");
        let fox = m0.matched[1];
        assert_eq!(idx.ngram_text(fox).unwrap(), "quick brown fox");
        assert_eq!(
            idx.postings(fox).unwrap(),
            [BenchRow { bench: 0, row: 0 }, BenchRow { bench: 1, row: 0 }]
        );
        assert_eq!(
            m1,
            RowMatch {
                n_ngrams: Some(1),
                matched: &[]
            }
        );
    }

    #[test]
    fn threads_do_not_change_results() {
        let idx = index(2, &[&["aa bb cc dd ee", "ff gg hh"]]);
        // Past 4096 rows: several parts, matched apart and read as one.
        let rows: Vec<String> = (0..10_000).map(|i| format!("x{i} aa bb y{i} gg hh cc dd")).collect();
        let rows: Vec<&str> = rows.iter().map(String::as_str).collect();
        assert_eq!(match_texts(&idx, &rows, 1), match_texts(&idx, &rows, 2));
        assert_eq!(match_texts(&idx, &rows, 1), match_texts(&idx, &rows, 0));
    }

    #[test]
    fn rows_with_several_texts_count_distinct_ngrams() {
        let idx = index(2, &[&["aa bb"]]);
        let texts = [Some("aa bb cc"), None, Some("aa bb"), Some("zz")];
        let m = idx.match_rows(&texts[..], &[0, 3, 3, 4], &[], Counts::All, 1).unwrap();
        assert_eq!(
            m.row(0),
            RowMatch {
                n_ngrams: Some(2),
                matched: &[0]
            }
        );
        let zero = RowMatch {
            n_ngrams: Some(0),
            matched: &[],
        };
        assert_eq!(m.row(1), zero);
        assert_eq!(m.row(2), zero);
    }

    #[test]
    fn only_matched_rows_are_counted_when_asked() {
        let idx = index(2, &[&["aa bb"]]);
        let texts = [Some("aa bb cc aa bb"), Some("cc dd ee"), Some("zz"), None];
        let bounds = [0, 1, 2, 3, 4];
        let all = idx.match_rows(&texts[..], &bounds, &[], Counts::All, 1).unwrap();
        let matched = idx.match_rows(&texts[..], &bounds, &[], Counts::Matched, 1).unwrap();
        let counts = |m: &Matches| m.rows().map(|r| r.n_ngrams).collect::<Vec<_>>();
        assert_eq!(counts(&all), [Some(3), Some(2), Some(0), Some(0)]);
        assert_eq!(counts(&matched), [Some(3), None, Some(0), Some(0)]);
        for (a, m) in all.rows().zip(matched.rows()) {
            assert_eq!(
                (a.matched, a.overlap(), a.is_flagged(0.5)),
                (m.matched, m.overlap(), m.is_flagged(0.5))
            );
        }
    }

    #[test]
    fn distinct_counting() {
        let mut table = Vec::new();
        assert_eq!(count_distinct(&[], &mut table), 0);
        assert_eq!(count_distinct(&[5, 5, 0, 1, 7, 5, 1 << 40, 7], &mut table), 4);
        let many: Vec<u64> = (0..1000u64).map(|i| (i % 300) << 20).collect();
        assert_eq!(count_distinct(&many, &mut table), 300);
    }

    #[test]
    fn ignored_groups_never_match() {
        let idx = index(2, &[&["aa bb cc"]]);
        let texts = [Some("aa bb cc")];
        let m = idx
            .match_rows(&texts[..], &[0, 1], &[true, false], Counts::All, 1)
            .unwrap();
        assert_eq!(m.row(0).matched, [1]);
        assert!(matches!(
            idx.match_rows(&texts[..], &[0, 1], &[true], Counts::All, 1),
            Err(Error::InvalidIgnoreMask { .. })
        ));
    }

    #[test]
    fn collisions_are_confirmed_by_tokens() {
        // Chain both groups under one hash, as a 64-bit collision would: lookups still compare tokens.
        let mut idx = index(2, &[&["aa bb", "cc dd"]]);
        idx.heads.clear();
        idx.filter = Filter::everything();
        idx.heads.insert(7, 1);
        idx.groups[1].next = 0;
        idx.groups[0].next = NONE;
        let find = |text: &str| {
            let mut t = Tokens::default();
            Tokenizer::Words.tokenize_into(text, &mut t).unwrap();
            idx.find(7, |k, token| t.get(k) == token)
        };
        assert_eq!(find("aa bb"), Some(0));
        assert_eq!(find("CC dd"), Some(1));
        assert_eq!(find("aa cc"), None);
    }

    #[test]
    fn a_text_that_is_not_utf8_is_named() {
        let idx = index(2, &[&["aa bb"]]);
        let texts: [Option<&[u8]>; 3] = [Some(b"aa bb"), None, Some(b"aa \xff bb")];
        assert_eq!(
            idx.match_rows(&texts[..], &[0, 1, 3], &[], Counts::All, 2),
            Err(Error::InvalidUtf8 { text: 2 })
        );
    }

    #[test]
    fn bad_arguments_are_errors() {
        assert!(matches!(
            BenchIndex::build(Tokenizer::Words, 0, &[]),
            Err(Error::InvalidNgram(0))
        ));
        let idx = index(2, &[&["aa bb"]]);
        assert!(matches!(
            idx.match_rows(&[Some("aa")][..], &[0, 2], &[], Counts::All, 1),
            Err(Error::InvalidRowBounds)
        ));
        assert!(matches!(
            idx.match_rows(&[Some("aa")][..], &[], &[], Counts::All, 1),
            Err(Error::InvalidRowBounds)
        ));
    }
}
