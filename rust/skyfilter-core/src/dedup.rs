//! Deduplication kernels: stable row keys for exact duplicates, MinHash signatures, and LSH banding with
//! union-find clustering for near duplicates.
//!
//! Everything here is deterministic: keys and signatures depend only on the text, and rows enter the LSH
//! index in input order, so clusters do not depend on the thread count or on how the input was batched.

use xxhash_rust::xxh3::{xxh3_64_with_seed, Xxh3};

use crate::ngram::{ngram_hashes, word_at, TokenHash, SEED};
use crate::rows::{check_bounds, map_rows, ByteRows};
use crate::shingle_sets::{jaccard_reaches, ShingleSets, SortedRows};
use crate::text::{in_range, is_python_space, lower_ascii, push_lowercase, Tokenizer, Tokens, TOPS};
use crate::Error;

/// Appends `text` with leading and trailing whitespace removed and inner whitespace runs collapsed to
/// one space (optionally lower-cased character by character, as [`push_lowercase`]: the installed character
/// classes' forms): the normal form under which two texts are exact duplicates. (A space
/// separates this text from what `out` held before it when the text starts with whitespace.)
pub fn normalize(text: &str, lowercase: bool, out: &mut String) {
    let bytes = text.as_bytes();
    let mut pending_space = false;
    let mut at = 0;
    while at < bytes.len() {
        // ASCII already in normal form (non-space bytes, single spaces between them) is copied in one piece (and
        // lower-cased byte-wise); other characters go one at a time.
        let (end, is_space) = if bytes[at].is_ascii() {
            (normal_ascii_end(bytes, at), is_ascii_python_space(bytes[at]))
        } else {
            let c = text[at..].chars().next().unwrap_or_default();
            (at + c.len_utf8(), is_python_space(c))
        };
        let piece = &text[at..end];
        at = end;
        if is_space {
            pending_space = true;
            continue;
        }
        if pending_space && !out.is_empty() {
            out.push(' ');
        }
        pending_space = false;
        if !lowercase {
            out.push_str(piece);
        } else if piece.is_ascii() {
            let start = out.len();
            out.push_str(piece);
            lower_ascii(&mut out[start..]);
        } else {
            piece.chars().for_each(|c| push_lowercase(c, out));
        }
    }
}

/// The end of the ASCII stretch in normal form from `at` (an ASCII byte): one byte if it is a space, else the
/// non-space bytes and single spaces up to the first space that is not between two of them, or non-ASCII byte.
/// Eight bytes at a time while nine are left (a byte's rule reads the byte after it), then byte by byte.
fn normal_ascii_end(bytes: &[u8], at: usize) -> usize {
    if is_ascii_python_space(bytes[at]) {
        return at + 1;
    }
    let mut end = at + 1;
    while end + 9 <= bytes.len() {
        let (here, after) = (word_at(bytes, end), word_at(bytes, end + 1));
        // A byte ends the stretch when it is not ASCII, or a space other than one ' ' before a plain byte.
        let (space, plain_after) = (ascii_spaces(here), !(ascii_spaces(after) | after) & TOPS);
        let ends = (here | space & !(in_range(here & !TOPS, b' ', b' ') & plain_after)) & TOPS;
        if ends != 0 {
            return end + ends.trailing_zeros() as usize / 8;
        }
        end += 8;
    }
    stretch_end_bytewise(bytes, end)
}

/// [`normal_ascii_end`]'s rule byte by byte from `end`, a byte within the stretch or just after it.
fn stretch_end_bytewise(bytes: &[u8], mut end: usize) -> usize {
    let plain = |b: u8| b.is_ascii() && !is_ascii_python_space(b);
    while end < bytes.len() {
        if plain(bytes[end]) {
            end += 1;
        } else if bytes[end] == b' ' && end + 1 < bytes.len() && plain(bytes[end + 1]) {
            end += 2;
        } else {
            break;
        }
    }
    end
}

/// Each byte's top bit set where the byte, read as ASCII (its top bit cleared), is an [`is_ascii_python_space`].
fn ascii_spaces(x: u64) -> u64 {
    let x = x & !TOPS;
    in_range(x, b' ', b' ') | in_range(x, b'\t', b'\r') | in_range(x, 0x1c, 0x1f)
}

/// [`is_python_space`] for an ASCII byte: space, `\t\n\x0b\x0c\r` and `\x1c..=\x1f`.
fn is_ascii_python_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t'..=b'\r' | 0x1c..=0x1f)
}

/// A 128-bit key per row over its texts `texts[bounds[r]..bounds[r + 1]]`, each normalised. The texts are
/// length-prefixed (a null text is marked apart from an empty one), so ("ab", "c") and ("a", "bc") differ.
pub fn row_keys(texts: &[Option<&str>], bounds: &[usize], lowercase: bool, threads: usize) -> Result<Vec<u128>, Error> {
    check_bounds(texts.len(), bounds)?;
    map_rows(bounds.len() - 1, threads, |buf: &mut String, r| {
        let mut hasher = Xxh3::with_seed(SEED);
        for text in &texts[bounds[r]..bounds[r + 1]] {
            match text {
                None => hasher.update(&u64::MAX.to_le_bytes()),
                Some(t) => {
                    buf.clear();
                    normalize(t, lowercase, buf);
                    hasher.update(&(buf.len() as u64).to_le_bytes());
                    hasher.update(buf.as_bytes());
                }
            }
        }
        hasher.digest128()
    })
}

/// MinHash over word shingles: for each of `num_perm` permutations, the minimum over the row's shingles of
/// `((a_i * x + b_i) mod 2^64) >> 32`, the multiply-add-shift family, where `x` is the high half of the
/// shingle's 64-bit hash, `a_i` an odd 64-bit and `b_i` a 32-bit constant from the seed. `a_i` is kept as two
/// 32-bit halves so that the loop vectorises.
#[derive(Clone, Debug)]
pub struct MinHasher {
    shingle: usize,
    a_lo: Vec<u32>,
    a_hi: Vec<u32>,
    b: Vec<u32>,
}

/// Signature value of a row that has no tokens: such rows never become candidates.
pub const EMPTY: u32 = u32::MAX;

/// The most permutations of a signature.
pub const MAX_PERM: usize = 1024;

fn check_num_perm(num_perm: usize) -> Result<(), Error> {
    if (1..=MAX_PERM).contains(&num_perm) {
        Ok(())
    } else {
        Err(Error::InvalidMinHash(format!(
            "num_perm must be 1..={MAX_PERM}, got {num_perm}"
        )))
    }
}

impl MinHasher {
    /// `num_perm` permutations (1..=[`MAX_PERM`]) over shingles of `shingle` words (1..=64), from a fixed seed.
    pub fn new(num_perm: usize, shingle: usize, seed: u64) -> Result<Self, Error> {
        check_num_perm(num_perm)?;
        if !(1..=crate::ngram::MAX_N).contains(&shingle) {
            return Err(Error::InvalidMinHash(format!(
                "shingle must be 1..=64 words, got {shingle}"
            )));
        }
        let coefficient = |i: usize, which: u64| xxh3_64_with_seed(&(i as u64).to_le_bytes(), seed ^ which);
        let a: Vec<u64> = (0..num_perm).map(|i| coefficient(i, 0xa) | 1).collect();
        Ok(Self {
            shingle,
            a_lo: a.iter().map(|&a| a as u32).collect(),
            a_hi: a.iter().map(|&a| (a >> 32) as u32).collect(),
            b: (0..num_perm).map(|i| coefficient(i, 0xb) as u32).collect(),
        })
    }

    /// Number of permutations.
    pub fn num_perm(&self) -> usize {
        self.b.len()
    }

    /// Signatures of rows (row `r` = the union of the shingles of `texts[bounds[r]..bounds[r + 1]]`), one
    /// after the other, `num_perm` values each. Tokens are the `words` preset's; a text with fewer tokens
    /// than the shingle size is one shingle; a row without tokens gets [`EMPTY`] everywhere. The texts are checked
    /// to be UTF-8 as they are tokenized, by the workers: the first that is not is the error.
    pub fn signatures<R: ByteRows + ?Sized>(
        &self,
        texts: &R,
        bounds: &[usize],
        threads: usize,
    ) -> Result<Vec<u32>, Error> {
        // Repeated shingles need no removal: a minimum is the same with or without them.
        Ok(self
            .map_shingles(texts, bounds, threads, |shingles| self.signature(shingles))?
            .concat())
    }

    /// [`MinHasher::signatures`] and the rows' shingle sets (the same shingles' 64-bit hashes, in text order with
    /// their repeats), for verifying candidates by their exact Jaccard similarity.
    pub fn signatures_and_shingles<R: ByteRows + ?Sized>(
        &self,
        texts: &R,
        bounds: &[usize],
        threads: usize,
    ) -> Result<(Vec<u32>, ShingleSets), Error> {
        let rows = self.map_shingles(texts, bounds, threads, |shingles| {
            (self.signature(shingles), shingles.to_vec())
        })?;
        let mut signatures = Vec::with_capacity(rows.len() * self.num_perm());
        let mut sets = ShingleSets::default();
        for (signature, set) in &rows {
            signatures.extend_from_slice(signature);
            sets.push(set);
        }
        Ok((signatures, sets))
    }

    /// `f(shingle hashes of the row)` for each row, in order (the hashes in text order, repeats included).
    fn map_shingles<T: Send, R: ByteRows + ?Sized>(
        &self,
        texts: &R,
        bounds: &[usize],
        threads: usize,
        f: impl Fn(&mut [u64]) -> T + Sync + Send,
    ) -> Result<Vec<T>, Error> {
        check_bounds(texts.len(), bounds)?;
        map_rows(bounds.len() - 1, threads, |s: &mut MinScratch, r| {
            s.shingles.clear();
            for t in bounds[r]..bounds[r + 1] {
                let Some(bytes) = texts.row(t) else { continue };
                Tokenizer::Words
                    .tokenize_utf8_into(bytes, &mut s.tokens)
                    .map_err(|fault| fault.error(t, bytes.len()))?;
                let n = self.shingle.min(s.tokens.len());
                if n == 0 {
                    continue;
                }
                ngram_hashes(&s.tokens, n, TokenHash::Stable, &mut s.token_hashes, &mut s.hashes);
                s.shingles.extend_from_slice(&s.hashes);
            }
            Ok(f(&mut s.shingles))
        })?
        .into_iter()
        .collect()
    }

    fn signature(&self, shingles: &[u64]) -> Vec<u32> {
        let mut sig = vec![EMPTY; self.b.len()];
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has just been found to support AVX2, the only requirement of `minima_avx2`.
            unsafe { minima_avx2(self, shingles, &mut sig) };
            return sig;
        }
        minima(self, shingles, &mut sig);
        sig
    }
}

/// The MinHash inner loop, written so that the compiler vectorises it: `((a * x + b) mod 2^64) >> 32` is
/// the high half of `a_lo * x + b` plus `a_hi * x` (mod 2^32), with 32x32-bit multiplies only.
// Always inlined: `minima_avx2` must compile this loop's body under its own target feature.
#[allow(clippy::inline_always)]
#[inline(always)]
fn minima(h: &MinHasher, shingles: &[u64], sig: &mut [u32]) {
    for &shingle in shingles {
        let x = (shingle >> 32) as u32;
        for (((m, &a_lo), &a_hi), &b) in sig.iter_mut().zip(&h.a_lo).zip(&h.a_hi).zip(&h.b) {
            let low = ((u64::from(a_lo) * u64::from(x) + u64::from(b)) >> 32) as u32;
            *m = (*m).min(low.wrapping_add(a_hi.wrapping_mul(x)));
        }
    }
}

/// [`minima`] compiled for AVX2, chosen at run time.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn minima_avx2(h: &MinHasher, shingles: &[u64], sig: &mut [u32]) {
    minima(h, shingles, sig);
}

#[derive(Default)]
struct MinScratch {
    tokens: Tokens,
    token_hashes: Vec<u64>,
    hashes: Vec<u64>,
    shingles: Vec<u64>,
}

/// Estimated Jaccard similarity of two signatures: the fraction of equal positions (0 if either is empty).
pub fn estimated_jaccard(x: &[u32], y: &[u32]) -> f64 {
    let empty = |s: &[u32]| s.iter().all(|&v| v == EMPTY);
    if x.is_empty() || empty(x) || empty(y) {
        return 0.0;
    }
    x.iter().zip(y).filter(|(a, b)| a == b).count() as f64 / x.len() as f64
}

/// Union-find over row indices; the root of a set is always its smallest row.
#[derive(Debug)]
struct UnionFind {
    parent: Vec<u32>,
}

impl UnionFind {
    fn new(rows: usize) -> Self {
        Self {
            parent: (0..rows as u32).collect(),
        }
    }

    fn find(&mut self, mut x: u32) -> u32 {
        while self.parent[x as usize] != x {
            let grand = self.parent[self.parent[x as usize] as usize];
            self.parent[x as usize] = grand;
            x = grand;
        }
        x
    }

    fn union(&mut self, x: u32, y: u32) {
        let (rx, ry) = (self.find(x), self.find(y));
        let (lo, hi) = if rx < ry { (rx, ry) } else { (ry, rx) };
        self.parent[hi as usize] = lo;
    }
}

/// How a candidate pair is verified.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verify {
    /// By the estimated Jaccard similarity of the signatures ([`estimated_jaccard`]).
    Estimate,
    /// By the exact Jaccard similarity of the rows' shingle sets ([`jaccard_reaches`]).
    Exact,
}

impl Verify {
    /// `"estimate"` or `"exact"`.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "estimate" => Some(Self::Estimate),
            "exact" => Some(Self::Exact),
            _ => None,
        }
    }
}

/// Near-duplicate clustering: MinHash signatures cut into LSH bands; rows sharing a band are candidates,
/// a candidate pair is verified when its Jaccard similarity (estimated, or exact from the shingle sets: see
/// [`Verify`]) reaches the threshold, and the clusters are exactly the connected components of the verified pairs.
///
/// How the components are found without verifying every candidate pair (see [`NearDedup::clusters`]):
/// 1. rows with identical signatures (and, verifying exactly, identical shingle sets) are joined first (found by
///    hashing the whole signature): they are candidates of each other with similarity 1, and they have the same
///    candidates and similarities as each other, so one of them (the first) stands for all in the buckets;
/// 2. in each bucket (one band's value), rows are taken in input order and the earlier rows of the bucket are
///    kept in groups, one per component. A row skips the groups of its own component, and is verified against
///    the members of every other group until one passes; it then joins that group's component (and may join
///    several, merging their groups). A pair is only skipped when its two rows are already in one component,
///    where verifying it cannot change the components.
///
/// Cost: a bucket of near copies of one text is one group, so each row costs one verification (against the
/// group's first row while it passes) instead of one per earlier row, and exact copies cost none. Verifications
/// that pass join two components, so there are fewer of them than rows; one that fails is between rows of
/// different components, at most once per bucket the two rows share. Only a bucket of `k` rows of which few
/// pairs pass costs up to `k (k - 1) / 2`, as brute force does: the price of an exact answer. Such buckets are
/// rare, as sharing a band means `rows_per_band` equal MinHash values.
///
/// Rows are added in input order; the result depends only on the rows, not on how they were added. Memory:
/// the signatures (and, verifying exactly, the shingle sets: 8 bytes per shingle of each row), then during
/// [`NearDedup::clusters`] up to 24 bytes per row plus 16 bytes per band of each distinct signature, and verifying
/// exactly 16 bytes per row more plus the sorted sets of the rows compared ([`SortedRows`]).
#[derive(Debug)]
pub struct NearDedup {
    bands: usize,
    rows_per_band: usize,
    num_perm: usize,
    /// The fewest equal signature positions at which two rows are similar: the smallest `e` with
    /// `e / num_perm >= threshold`, the estimated Jaccard of [`estimated_jaccard`].
    min_equal: usize,
    threshold: f64,
    verify: Verify,
    signatures: Vec<u32>,
    /// The rows' shingle sets, verifying exactly (empty otherwise).
    shingles: ShingleSets,
    rows: usize,
}

impl NearDedup {
    /// `num_perm` as [`MinHasher::new`]'s, and `bands * rows_per_band` must not exceed it; pairs join a cluster
    /// when their Jaccard similarity, estimated or exact (`verify`), reaches `threshold`.
    pub fn new(
        num_perm: usize,
        bands: usize,
        rows_per_band: usize,
        threshold: f64,
        verify: Verify,
    ) -> Result<Self, Error> {
        check_num_perm(num_perm)?;
        let used = bands.checked_mul(rows_per_band);
        if bands == 0 || rows_per_band == 0 || used.is_none_or(|used| used > num_perm) {
            return Err(Error::InvalidMinHash(format!(
                "bands ({bands}) x rows per band ({rows_per_band}) must be positive and at most num_perm ({num_perm})"
            )));
        }
        if !(0.0..=1.0).contains(&threshold) {
            return Err(Error::InvalidMinHash(format!(
                "threshold must be within [0, 1], got {threshold}"
            )));
        }
        let min_equal = (0..=num_perm)
            .find(|&equal| equal as f64 / num_perm as f64 >= threshold)
            .unwrap_or(num_perm);
        Ok(Self {
            bands,
            rows_per_band,
            num_perm,
            min_equal,
            threshold,
            verify,
            signatures: Vec::new(),
            shingles: ShingleSets::default(),
            rows: 0,
        })
    }

    /// Number of rows added so far.
    pub fn len(&self) -> usize {
        self.rows
    }

    /// Whether no row was added.
    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// Number of values in a signature.
    pub fn num_perm(&self) -> usize {
        self.num_perm
    }

    /// How candidates are verified.
    pub fn verify(&self) -> Verify {
        self.verify
    }

    /// Adds the next rows (their signatures, `num_perm` values each, in input order, and verifying exactly their
    /// shingle sets, from [`MinHasher::signatures_and_shingles`]; none otherwise).
    pub fn add(&mut self, signatures: &[u32], shingles: Option<ShingleSets>) -> Result<(), Error> {
        let added = self.whole_signatures(signatures)?;
        let rows = self.rows + added;
        if rows > u32::MAX as usize {
            return Err(Error::InvalidMinHash("more than 2^32 - 1 rows".into()));
        }
        match (self.verify, shingles) {
            (Verify::Exact, Some(sets)) if sets.len() == added && self.shingles.is_empty() => self.shingles = sets,
            (Verify::Exact, Some(sets)) if sets.len() == added => self.shingles.extend(&sets),
            (Verify::Exact, Some(sets)) => {
                return Err(Error::InvalidMinHash(format!(
                    "{} shingle sets for {added} signatures",
                    sets.len()
                )))
            }
            (Verify::Exact, None) => {
                return Err(Error::InvalidMinHash(
                    "verifying exactly needs the rows' shingle sets".into(),
                ))
            }
            (Verify::Estimate, Some(_)) => {
                return Err(Error::InvalidMinHash(
                    "shingle sets are only for verifying exactly".into(),
                ))
            }
            (Verify::Estimate, None) => {}
        }
        self.signatures.extend_from_slice(signatures);
        self.rows = rows;
        Ok(())
    }

    fn signature(&self, row: u32) -> &[u32] {
        let start = row as usize * self.num_perm;
        &self.signatures[start..start + self.num_perm]
    }

    /// Whether two rows with tokens are near duplicates (their Jaccard, estimated or exact, reaches the threshold).
    fn similar(&self, x: u32, y: u32, shingles: &SortedRows) -> bool {
        match self.verify {
            Verify::Estimate => {
                let equal = self
                    .signature(x)
                    .iter()
                    .zip(self.signature(y))
                    .filter(|(a, b)| a == b)
                    .count();
                equal >= self.min_equal
            }
            Verify::Exact => jaccard_reaches(shingles.row(x as usize), shingles.row(y as usize), self.threshold),
        }
    }

    /// Whether one of two rows stands for the other everywhere: equal signatures (and, verifying exactly, equal
    /// shingle sets).
    fn same(&self, x: u32, y: u32, shingles: &SortedRows) -> bool {
        self.signature(x) == self.signature(y)
            && (self.verify == Verify::Estimate || shingles.row(x as usize) == shingles.row(y as usize))
    }

    /// The cluster of every row added: the smallest row index of its connected component.
    pub fn clusters(&self) -> Vec<u32> {
        let shingles = SortedRows::new(&self.shingles);
        let mut sets = UnionFind::new(self.rows);
        let nodes = self.join_identical(&mut sets, &shingles);
        self.join_buckets(self.band_keys(&nodes), &mut sets, &shingles);
        (0..self.rows as u32).map(|r| sets.find(r)).collect()
    }

    /// The LSH band keys of the rows with tokens among `signatures` (`num_perm` values each, not added to this
    /// index): (key, row) with `row` the 0-based index in `signatures`, the bands of each row in order. These are
    /// the keys [`NearDedup::clusters`] puts rows in buckets by, so rows from several calls (several machines)
    /// are candidates of each other exactly when they would be in one index.
    pub fn signature_band_keys(&self, signatures: &[u32]) -> Result<Vec<(u64, u32)>, Error> {
        let rows = self.whole_signatures(signatures)?;
        let with_tokens = |r: &u32| {
            let start = *r as usize * self.num_perm;
            signatures[start..start + self.num_perm].iter().any(|&v| v != EMPTY)
        };
        let rows: Vec<u32> = (0..rows as u32).filter(with_tokens).collect();
        Ok(band_keys(
            signatures,
            self.num_perm,
            self.bands,
            self.rows_per_band,
            &rows,
        ))
    }

    /// The cluster of every row added, joining only candidates that share a bucket among `entries` (band key,
    /// row added), in any order and possibly repeated: the smallest row index of its connected component of the
    /// verified pairs within those buckets, and of the rows with identical signatures (which share every
    /// bucket). Each bucket must come whole (all the rows with its key), as the rows of one group of a shuffle
    /// by band key do; rows without tokens are never joined. With every band key of every row, this is
    /// [`NearDedup::clusters`]; the union of the components found over disjoint sets of buckets (on several
    /// machines) is the components of all of them.
    pub fn bucket_clusters(&self, entries: &[(u64, u32)]) -> Result<Vec<u32>, Error> {
        if let Some(&(_, row)) = entries.iter().find(|&&(_, row)| row as usize >= self.rows) {
            return Err(Error::InvalidMinHash(format!(
                "row {row} of a bucket is not one of the {} rows added",
                self.rows
            )));
        }
        let shingles = SortedRows::new(&self.shingles);
        let mut sets = UnionFind::new(self.rows);
        let mut is_node = vec![false; self.rows];
        for row in self.join_identical(&mut sets, &shingles) {
            is_node[row as usize] = true;
        }
        // A row with the signature of an earlier one is in the same buckets; that row stands for it there.
        let keys = entries
            .iter()
            .copied()
            .filter(|&(_, row)| is_node[row as usize])
            .collect();
        self.join_buckets(keys, &mut sets, &shingles);
        Ok((0..self.rows as u32).map(|r| sets.find(r)).collect())
    }

    /// Joins the verified pairs of every bucket of two rows or more among `keys` (band key, row).
    fn join_buckets(&self, mut keys: Vec<(u64, u32)>, sets: &mut UnionFind, shingles: &SortedRows) {
        keys.sort_unstable();
        keys.dedup(); // a row twice in a bucket: two of its bands hash alike
        let mut scratch = BucketScratch::default();
        for bucket in keys.chunk_by(|a, b| a.0 == b.0) {
            if bucket.len() > 1 {
                self.join_bucket(bucket, sets, &mut scratch, shingles);
            }
        }
    }

    /// The number of whole signatures in `signatures`, or an error.
    fn whole_signatures(&self, signatures: &[u32]) -> Result<usize, Error> {
        if !signatures.len().is_multiple_of(self.num_perm) {
            return Err(Error::InvalidMinHash(format!(
                "{} signature values are not whole signatures of {}",
                signatures.len(),
                self.num_perm
            )));
        }
        let rows = signatures.len() / self.num_perm;
        if rows > u32::MAX as usize {
            return Err(Error::InvalidMinHash("more than 2^32 - 1 rows".into()));
        }
        Ok(rows)
    }

    /// Joins the rows with tokens whose signatures (and, verifying exactly, shingle sets) are identical; returns
    /// the rows that stand for the others (each the first of its kind).
    fn join_identical(&self, sets: &mut UnionFind, shingles: &SortedRows) -> Vec<u32> {
        let mut bytes = Vec::with_capacity(4 * self.num_perm);
        let mut whole: Vec<(u64, u32)> = (0..self.rows as u32)
            .filter(|&row| self.signature(row).iter().any(|&v| v != EMPTY))
            .map(|row| {
                bytes.clear();
                bytes.extend(self.signature(row).iter().flat_map(|v| v.to_le_bytes()));
                (xxh3_64_with_seed(&bytes, SEED), row)
            })
            .collect();
        whole.sort_unstable();
        let mut nodes = Vec::with_capacity(whole.len());
        for run in whole.chunk_by(|a, b| a.0 == b.0) {
            let first = run[0].1;
            nodes.push(first);
            for &(_, row) in &run[1..] {
                // Equal hashes of different signatures (almost never), or equal signatures of different shingle
                // sets, leave the row a node of its own.
                if self.same(first, row, shingles) {
                    sets.union(first, row);
                } else {
                    nodes.push(row);
                }
            }
        }
        nodes
    }

    /// (hash of one band of a row's signature, seeded by the band, row) for every band of the given rows.
    fn band_keys(&self, rows: &[u32]) -> Vec<(u64, u32)> {
        band_keys(&self.signatures, self.num_perm, self.bands, self.rows_per_band, rows)
    }

    /// Joins the verified pairs of one bucket (rows ascending), as described on [`NearDedup`].
    fn join_bucket(
        &self,
        bucket: &[(u64, u32)],
        sets: &mut UnionFind,
        scratch: &mut BucketScratch,
        shingles: &SortedRows,
    ) {
        let BucketScratch { groups, next } = scratch;
        groups.clear();
        next.clear();
        next.resize(bucket.len(), NONE);
        for (pos, &(_, row)) in bucket.iter().enumerate() {
            let mut own: Option<usize> = None;
            let mut g = 0;
            while g < groups.len() {
                let root = sets.find(groups[g].root);
                groups[g].root = root;
                let joins =
                    root == sets.find(row) || self.join_group(row, groups[g].head, bucket, next, sets, shingles);
                match (joins, own) {
                    (false, _) => g += 1,
                    (true, None) => {
                        own = Some(g);
                        g += 1;
                    }
                    (true, Some(o)) => {
                        // `o < g`, so removing `g` moves an unvisited group into its place.
                        let merged = groups.swap_remove(g);
                        next[groups[o].tail as usize] = merged.head;
                        groups[o].tail = merged.tail;
                    }
                }
            }
            let pos = pos as u32;
            match own {
                Some(o) => {
                    next[groups[o].tail as usize] = pos;
                    groups[o].tail = pos;
                }
                None => groups.push(Group {
                    root: sets.find(row),
                    head: pos,
                    tail: pos,
                }),
            }
        }
    }

    /// Verifies `row` against the members of the group starting at `head` until one passes; joins them then.
    fn join_group(
        &self,
        row: u32,
        head: u32,
        bucket: &[(u64, u32)],
        next: &[u32],
        sets: &mut UnionFind,
        shingles: &SortedRows,
    ) -> bool {
        let mut member = head;
        while member != NONE {
            let other = bucket[member as usize].1;
            if self.similar(row, other, shingles) {
                sets.union(row, other);
                return true;
            }
            member = next[member as usize];
        }
        false
    }
}

/// (hash of one band of a row's signature, seeded by the band, row) for every band of the given rows of
/// `signatures` (`num_perm` values each).
fn band_keys(signatures: &[u32], num_perm: usize, bands: usize, rows_per_band: usize, rows: &[u32]) -> Vec<(u64, u32)> {
    let mut bytes = Vec::with_capacity(4 * rows_per_band);
    let mut keys = Vec::with_capacity(rows.len() * bands);
    for &row in rows {
        let start = row as usize * num_perm;
        let values = signatures[start..start + num_perm]
            .chunks_exact(rows_per_band)
            .take(bands);
        for (band, values) in values.enumerate() {
            bytes.clear();
            bytes.extend(values.iter().flat_map(|v| v.to_le_bytes()));
            keys.push((xxh3_64_with_seed(&bytes, SEED.wrapping_add(band as u64)), row));
        }
    }
    keys
}

/// The connected components of a graph given as edges `(left[i], right[i])` over any `u64` nodes: the nodes
/// (ascending, each once) and the smallest node of each one's component. Memory: 24 bytes per edge end.
pub fn components(left: &[u64], right: &[u64]) -> Result<(Vec<u64>, Vec<u64>), Error> {
    if left.len() != right.len() {
        return Err(Error::InvalidMinHash(format!(
            "edges need as many left ends ({}) as right ends ({})",
            left.len(),
            right.len()
        )));
    }
    let mut nodes = [left, right].concat();
    nodes.sort_unstable();
    nodes.dedup();
    if nodes.len() > u32::MAX as usize {
        return Err(Error::InvalidMinHash("more than 2^32 - 1 nodes".into()));
    }
    let index = |node: &u64| nodes.binary_search(node).unwrap_or_default() as u32;
    let mut sets = UnionFind::new(nodes.len());
    for (x, y) in left.iter().zip(right) {
        sets.union(index(x), index(y));
    }
    let roots = (0..nodes.len() as u32).map(|i| nodes[sets.find(i) as usize]).collect();
    Ok((nodes, roots))
}

/// End of a group's list of bucket positions.
const NONE: u32 = u32::MAX;

/// The rows of a bucket that are in one component: a list of bucket positions linked through
/// [`BucketScratch::next`], and a row of the component (its root when last looked at).
#[derive(Clone, Copy, Debug)]
struct Group {
    root: u32,
    head: u32,
    tail: u32,
}

/// Buffers reused from bucket to bucket.
#[derive(Default)]
struct BucketScratch {
    groups: Vec<Group>,
    /// The next bucket position of the same group, or [`NONE`].
    next: Vec<u32>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows<'a>(texts: &[&'a str]) -> (Vec<Option<&'a str>>, Vec<usize>) {
        (texts.iter().map(|t| Some(*t)).collect(), (0..=texts.len()).collect())
    }

    fn normalized(text: &str, lowercase: bool) -> String {
        let mut out = String::new();
        normalize(text, lowercase, &mut out);
        out
    }

    #[test]
    fn normalization_collapses_whitespace() {
        assert_eq!(normalized("  Hello \n\t World  ", false), "Hello World");
        assert_eq!(normalized("ÉTÉ  x", true), "été x");
    }

    #[test]
    fn ascii_spaces_are_the_python_ones() {
        for b in 0..128u8 {
            assert_eq!(is_ascii_python_space(b), is_python_space(char::from(b)), "{b}");
        }
    }

    #[test]
    fn ascii_stretches_end_where_the_byte_rule_ends_them() {
        // The rule read one byte at a time all along, against the eight-byte words, on every stretch start of
        // texts mixing plain bytes, each kind of space, doubled spaces and bytes of longer characters.
        let bytewise = |bytes: &[u8], at: usize| {
            if is_ascii_python_space(bytes[at]) {
                at + 1
            } else {
                stretch_end_bytewise(bytes, at + 1)
            }
        };
        let pieces = [
            "a", "bc", "Z9", " ", "  ", "\t", "\n", "\r", "\u{b}", "\u{c}", "\u{1c}", "\u{1f}", "\u{7f}", "!", "é",
            "\u{a0}", "\u{2003}", "中",
        ];
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        for _ in 0..3000 {
            let mut text = String::new();
            for _ in 0..(state % 40) {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                let pick = (state >> 33) as usize % (pieces.len() + 6);
                text.push_str(pieces.get(pick).copied().unwrap_or("word"));
            }
            let bytes = text.as_bytes();
            for at in (0..bytes.len()).filter(|&at| bytes[at].is_ascii()) {
                assert_eq!(normal_ascii_end(bytes, at), bytewise(bytes, at), "{text:?} from {at}");
            }
        }
    }

    #[test]
    fn normalization_mixes_ascii_runs_and_other_characters() {
        assert_eq!(
            normalized("\u{a0}Ab\u{2003}\u{c9}T\u{c9} \u{85}x\x1fY  ", true),
            "ab \u{e9}t\u{e9} x y"
        );
        assert_eq!(normalized("AB\u{130}cD", false), "AB\u{130}cD");
        assert_eq!(normalized("AB\u{130}cD", true), "abi\u{307}cd");
    }

    #[test]
    fn keys_tell_rows_apart_exactly() {
        let texts = [
            Some("a b"),
            Some(" a  b "),
            Some("ab"),
            None,
            Some(""),
            Some("a"),
            Some("bc"),
            Some("ab"),
            Some("c"),
        ];
        let keys = row_keys(&texts, &[0, 1, 2, 3, 4, 5, 7, 9], false, 1).unwrap();
        assert_eq!(keys[0], keys[1]); // whitespace only
        assert_ne!(keys[0], keys[2]);
        assert_ne!(keys[3], keys[4]); // null is not empty
        assert_ne!(keys[5], keys[6]); // ("a", "bc") vs ("ab", "c")
        assert_eq!(keys, row_keys(&texts, &[0, 1, 2, 3, 4, 5, 7, 9], false, 2).unwrap());
    }

    #[test]
    fn minhash_estimates_jaccard() {
        let hasher = MinHasher::new(256, 1, 7).unwrap();
        let a = (0..100).map(|i| format!("w{i}")).collect::<Vec<_>>().join(" ");
        let b = (50..150).map(|i| format!("w{i}")).collect::<Vec<_>>().join(" ");
        let (texts, bounds) = rows(&[&a, &b, ""]);
        let sigs = hasher.signatures(&texts[..], &bounds, 1).unwrap();
        let est = estimated_jaccard(&sigs[..256], &sigs[256..512]);
        assert!((est - 1.0 / 3.0).abs() < 0.1, "{est}");
        assert!(sigs[512..].iter().all(|&v| v == EMPTY));
        assert_eq!(sigs, hasher.signatures(&texts[..], &bounds, 2).unwrap());
    }

    #[test]
    fn near_duplicates_cluster_to_their_first_row() {
        let base = (0..60).map(|i| format!("word{i}")).collect::<Vec<_>>().join(" ");
        let edited = base.replace("word30", "changed");
        let other = (0..60).map(|i| format!("other{i}")).collect::<Vec<_>>().join(" ");
        let (texts, bounds) = rows(&[&other, &base, "", &edited, &base]);
        let hasher = MinHasher::new(128, 5, 1).unwrap();
        let sigs = hasher.signatures(&texts[..], &bounds, 1).unwrap();
        let mut near = NearDedup::new(128, 16, 8, 0.7, Verify::Estimate).unwrap();
        near.add(&sigs[..2 * 128], None).unwrap();
        near.add(&sigs[2 * 128..], None).unwrap();
        assert_eq!(near.clusters(), vec![0, 1, 2, 1, 1]);
    }

    /// Clusters of rows given as signatures of 4 values, one band of one value: every row is in one bucket.
    fn one_bucket(sigs: &[[u32; 4]], threshold: f64) -> Vec<u32> {
        let mut near = NearDedup::new(4, 1, 1, threshold, Verify::Estimate).unwrap();
        near.add(&sigs.concat(), None).unwrap();
        near.clusters()
    }

    #[test]
    fn clusters_are_connected_components() {
        // J(A, B) = 0.25, J(A, C) = 0.5, J(B, C) = 0.75: A - C - B is one component at 0.5.
        let (a, b, c) = ([1, 2, 3, 4], [1, 5, 6, 7], [1, 2, 6, 7]);
        assert_eq!(one_bucket(&[a, b, c], 0.5), vec![0, 0, 0]);
        assert_eq!(one_bucket(&[a, b, c], 0.75), vec![0, 1, 1]);
        // C joins A's and B's components, which were apart until then.
        assert_eq!(one_bucket(&[a, [1, 8, 9, 7], [1, 2, 9, 7]], 0.5), vec![0, 0, 0]);
    }

    #[test]
    fn no_verified_pair_is_left_apart_in_a_large_bucket() {
        // 65 rows alike only in the band (J = 0.25), then an exact copy and a near copy (J = 0.75) of row 64.
        let mut sigs: Vec<[u32; 4]> = (0..65).map(|i| [1, 10 + 3 * i, 11 + 3 * i, 12 + 3 * i]).collect();
        sigs.push(sigs[64]);
        sigs.push([1, sigs[64][1], sigs[64][2], 7]);
        let clusters = one_bucket(&sigs, 0.5);
        assert_eq!(clusters[64..], [64, 64, 64]);
        assert_eq!(clusters[..64], (0..64).collect::<Vec<u32>>());
    }

    #[test]
    fn exact_verification_reads_the_shingle_sets() {
        // One signature for all, so every pair is a candidate; the sets tell them apart.
        let mut sets = ShingleSets::default();
        for row in [
            &mut (0..10).collect::<Vec<u64>>(),
            &mut (0..10).collect(),
            &mut (0..5).collect(),
            &mut (0..8).collect(),
        ] {
            sets.push(row);
        }
        let sigs = [1, 2, 3, 4].repeat(4);
        let mut exact = NearDedup::new(4, 1, 4, 0.7, Verify::Exact).unwrap();
        exact.add(&sigs, Some(sets.clone())).unwrap();
        // J(0, 2) = 0.5, J(0, 3) = 0.8, J(2, 3) = 0.625: rows 0, 1 and 3 together, row 2 apart.
        assert_eq!(exact.clusters(), vec![0, 0, 2, 0]);
        assert!(exact.add(&sigs, None).is_err());
        assert!(exact.add(&sigs[..4], Some(sets.clone())).is_err());
        let mut estimate = NearDedup::new(4, 1, 4, 0.7, Verify::Estimate).unwrap();
        estimate.add(&sigs, None).unwrap();
        assert_eq!(estimate.clusters(), vec![0, 0, 0, 0]);
        assert!(estimate.add(&sigs, Some(sets)).is_err());
    }

    #[test]
    fn shingle_sets_are_the_signatures_shingles() {
        let hasher = MinHasher::new(16, 2, 3).unwrap();
        let (texts, bounds) = rows(&["aa bb cc aa bb", "", "x", "dd ee"]);
        let (sigs, sets) = hasher.signatures_and_shingles(&texts[..], &bounds, 1).unwrap();
        assert_eq!(sigs, hasher.signatures(&texts[..], &bounds, 1).unwrap());
        assert_eq!(sets.len(), 4);
        assert_eq!(sets.row(0).len(), 4); // "aa bb", "bb cc", "cc aa", "aa bb" again: as the text gives them
        assert_eq!(SortedRows::new(&sets).row(0).len(), 3);
        assert_eq!(sets.row(0)[0], sets.row(0)[3]);
        assert!(sets.row(1).is_empty() && sets.row(2).is_empty()); // no tokens ("x" is one character)
        assert_eq!(sets.row(3).len(), 1);
        assert_eq!(
            (sigs.clone(), sets.clone()),
            hasher.signatures_and_shingles(&texts[..], &bounds, 2).unwrap()
        );
    }

    #[test]
    fn rows_without_tokens_stay_apart() {
        let mut near = NearDedup::new(4, 2, 2, 0.0, Verify::Estimate).unwrap();
        near.add(&[EMPTY; 8], None).unwrap();
        near.add(&[1, 2, 3, 4, 1, 2, 3, 4], None).unwrap();
        assert_eq!(near.clusters(), vec![0, 1, 2, 2]);
    }

    #[test]
    fn vectorised_hash_is_multiply_add_shift() {
        let h = MinHasher::new(8, 1, 3).unwrap();
        let shingle = 0x1234_5678_9abc_def0u64;
        let mut sig = vec![EMPTY; 8];
        minima(&h, &[shingle], &mut sig);
        for (i, &value) in sig.iter().enumerate() {
            let a = (u64::from(h.a_hi[i]) << 32) | u64::from(h.a_lo[i]);
            let expected = (a.wrapping_mul(shingle >> 32).wrapping_add(u64::from(h.b[i])) >> 32) as u32;
            assert_eq!(value, expected);
        }
        assert_eq!(h.signature(&[shingle]), sig); // the AVX2 path, where the CPU has it
    }

    /// Signatures of 8 values for near and exact copies of a few texts, and rows without tokens.
    fn copies() -> Vec<u32> {
        let base = (0..80).map(|i| format!("word{i}")).collect::<Vec<_>>().join(" ");
        let other = (0..80).map(|i| format!("other{i}")).collect::<Vec<_>>().join(" ");
        let edits: Vec<String> = (0..6).map(|i| base.replace(&format!("word{}", 10 * i), "x")).collect();
        let mut texts: Vec<&str> = vec![&other, &base, "", &edits[0], &base, &edits[1], &other, ""];
        texts.extend(edits[2..].iter().map(String::as_str));
        let (texts, bounds) = rows(&texts);
        MinHasher::new(32, 3, 5)
            .unwrap()
            .signatures(&texts[..], &bounds, 1)
            .unwrap()
    }

    #[test]
    fn buckets_from_band_keys_give_the_clusters() {
        let sigs = copies();
        let mut near = NearDedup::new(32, 8, 4, 0.6, Verify::Estimate).unwrap();
        near.add(&sigs, None).unwrap();
        let keys = near.signature_band_keys(&sigs).unwrap();
        // Rows 2 and 7 have no tokens: no keys; the others have one per band, in order.
        assert_eq!(keys.len(), 8 * (near.len() - 2));
        assert!(keys.iter().all(|&(_, row)| row != 2 && row != 7));
        assert_eq!(
            keys,
            near.band_keys(&keys.iter().step_by(8).map(|k| k.1).collect::<Vec<_>>())
        );
        assert_eq!(near.bucket_clusters(&keys).unwrap(), near.clusters());
        // Any split of the buckets: the components of the union of the parts are the clusters.
        let (mut left, mut right) = (Vec::new(), Vec::new());
        for part in 0..3u64 {
            let some: Vec<_> = keys.iter().copied().filter(|k| k.0 % 3 == part).collect();
            for (row, root) in near.bucket_clusters(&some).unwrap().into_iter().enumerate() {
                left.push(row as u64);
                right.push(u64::from(root));
            }
        }
        let (nodes, roots) = components(&left, &right).unwrap();
        assert_eq!(nodes, (0..near.len() as u64).collect::<Vec<_>>());
        assert_eq!(roots, near.clusters().into_iter().map(u64::from).collect::<Vec<_>>());
    }

    #[test]
    fn only_the_given_buckets_join_rows() {
        let (a, b) = ([1, 2, 3, 4], [1, 2, 3, 5]);
        let mut near = NearDedup::new(4, 2, 2, 0.5, Verify::Estimate).unwrap();
        near.add(&[a, b, a, [EMPTY; 4]].concat(), None).unwrap();
        assert_eq!(near.bucket_clusters(&[]).unwrap(), vec![0, 1, 0, 3]); // identical rows only
        assert_eq!(
            near.bucket_clusters(&[(7, 1), (7, 0), (7, 1)]).unwrap(),
            vec![0, 0, 0, 3]
        );
        assert_eq!(near.bucket_clusters(&[(7, 3), (7, 1)]).unwrap(), vec![0, 1, 0, 3]);
        assert!(near.bucket_clusters(&[(7, 4)]).is_err());
        assert!(near.signature_band_keys(&[1, 2, 3]).is_err());
    }

    #[test]
    fn components_are_named_by_their_smallest_node() {
        let (nodes, roots) = components(&[9, 4, 30, 9], &[7, 30, 5, 9]).unwrap();
        assert_eq!(nodes, vec![4, 5, 7, 9, 30]);
        assert_eq!(roots, vec![4, 4, 7, 7, 4]);
        assert_eq!(components(&[], &[]).unwrap(), (vec![], vec![]));
        assert!(components(&[1], &[]).is_err());
    }

    #[test]
    fn bad_parameters_are_errors() {
        assert!(MinHasher::new(0, 5, 1).is_err());
        assert!(MinHasher::new(128, 0, 1).is_err());
        assert!(NearDedup::new(128, 16, 9, 0.7, Verify::Estimate).is_err());
        assert!(NearDedup::new(128, 16, 8, 1.5, Verify::Estimate).is_err());
        assert!(NearDedup::new(128, 1 << 32, 1 << 32, 0.7, Verify::Estimate).is_err()); // the product overflows
        assert!(NearDedup::new(128, usize::MAX, 2, 0.7, Verify::Estimate).is_err());
        assert!(NearDedup::new(128, 16, 8, f64::NAN, Verify::Estimate).is_err());
        // Found by fuzzing: a num_perm no signature has is refused at once (it was a loop of num_perm steps).
        assert!(NearDedup::new(1 << 40, 1, 1, 1.0, Verify::Estimate).is_err());
        assert!(NearDedup::new(MAX_PERM + 1, 1, 1, 0.5, Verify::Estimate).is_err());
        assert!(NearDedup::new(MAX_PERM, 1, MAX_PERM, 1.0, Verify::Estimate).is_ok());
        let mut near = NearDedup::new(4, 2, 2, 0.5, Verify::Estimate).unwrap();
        assert!(near.add(&[1, 2, 3], None).is_err());
    }
}
