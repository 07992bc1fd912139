//! Score-based selection: per-row rules (score thresholds, margin, reward-model agreement, length ratio) and
//! the top fraction of each group by an adjusted score.
//!
//! A row gets the code of the first rule it fails, in the order of [`REASONS`]; [`KEPT`] if it passes all.
//! Missing values (NaN; callers turn nulls into NaN) of a column an active rule reads fail the
//! [`MISSING`] rule before any other.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::ops::Range;

use rayon::prelude::*;

use crate::pool::pool;
use crate::rows::{map_chunks, map_rows, utf8, ByteRows};
use crate::Error;

/// Row codes, in order of precedence: a row is dropped for the first rule it fails.
pub const REASONS: [&str; 8] = [
    "kept",
    "missing_score",
    "chosen_score",
    "rejected_score",
    "margin",
    "rm_agreement",
    "length_ratio",
    "top_fraction",
];
pub const KEPT: u8 = 0;
pub const MISSING: u8 = 1;
pub const CHOSEN_SCORE: u8 = 2;
pub const REJECTED_SCORE: u8 = 3;
pub const MARGIN: u8 = 4;
pub const RM_AGREEMENT: u8 = 5;
pub const LENGTH_RATIO: u8 = 6;
pub const TOP_FRACTION: u8 = 7;

/// Inclusive bounds on a value; `None` is unbounded on that side.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Bounds {
    pub min: Option<f64>,
    pub max: Option<f64>,
}

impl Bounds {
    pub fn is_active(&self) -> bool {
        self.min.is_some() || self.max.is_some()
    }

    /// Whether `x` lies within the bounds (NaN never does).
    pub fn holds(&self, x: f64) -> bool {
        self.min.is_none_or(|m| x >= m) && self.max.is_none_or(|m| x <= m) && !x.is_nan()
    }
}

/// The row-local rules; inactive bounds and `rm_agreement = false` are off.
#[derive(Clone, Copy, Debug, Default)]
pub struct RowRules {
    /// Bounds on the chosen answer's score.
    pub chosen: Bounds,
    /// Bounds on the rejected answer's score.
    pub rejected: Bounds,
    /// Bounds on chosen score minus rejected score.
    pub margin: Bounds,
    /// Keep only rows where the reward model scores the chosen answer strictly above the rejected one.
    pub rm_agreement: bool,
}

/// One batch's columns; NaN marks a missing value. Columns no active rule reads may be `None`.
#[derive(Clone, Copy, Debug, Default)]
pub struct RowValues<'a> {
    /// The ranking score (for the top fraction); `None` when there is no ranking.
    pub score: Option<&'a [f64]>,
    /// Added to the score (per-group offsets, already looked up per row).
    pub offset: Option<&'a [f64]>,
    pub chosen: Option<&'a [f64]>,
    pub rejected: Option<&'a [f64]>,
    pub rm_chosen: Option<&'a [f64]>,
    pub rm_rejected: Option<&'a [f64]>,
}

/// `chosen / rejected` lengths; 1 when both are empty, infinite when only the rejected answer is.
pub fn length_ratio(chosen: u64, rejected: u64) -> f64 {
    match (chosen, rejected) {
        (0, 0) => 1.0,
        (c, r) => c as f64 / r as f64,
    }
}

fn need<'a, T>(column: Option<&'a [T]>, name: &str, rows: usize) -> Result<&'a [T], Error> {
    match column {
        None => Err(Error::InvalidSelect(format!("the rules need the {name} column"))),
        Some(c) if c.len() != rows => Err(Error::InvalidSelect(format!(
            "{name} has {} rows, expected {rows}",
            c.len()
        ))),
        Some(c) => Ok(c),
    }
}

/// The code of every row under the row-local rules, and its adjusted score (`score + offset`, with -0.0 made
/// 0.0) when a score is given. A missing score or offset counts as missing only when a score is given. Every
/// column given must have `rows` values, whether a rule reads it or not.
pub fn row_reasons(values: &RowValues, rules: &RowRules, rows: usize) -> Result<(Vec<u8>, Vec<f64>), Error> {
    let columns = [
        (values.score, "score"),
        (values.offset, "offset"),
        (values.chosen, "chosen score"),
        (values.rejected, "rejected score"),
        (values.rm_chosen, "reward-model chosen score"),
        (values.rm_rejected, "reward-model rejected score"),
    ];
    for (column, name) in columns {
        if let Some(c) = column {
            need(Some(c), name, rows)?;
        }
    }
    let chosen = if rules.chosen.is_active() || rules.margin.is_active() {
        Some(need(values.chosen, "chosen score", rows)?)
    } else {
        None
    };
    let rejected = if rules.rejected.is_active() || rules.margin.is_active() {
        Some(need(values.rejected, "rejected score", rows)?)
    } else {
        None
    };
    let rm = if rules.rm_agreement {
        Some((
            need(values.rm_chosen, "reward-model chosen score", rows)?,
            need(values.rm_rejected, "reward-model rejected score", rows)?,
        ))
    } else {
        None
    };
    let score = values.score.map(|s| need(Some(s), "score", rows)).transpose()?;
    let offset = values.offset.map(|o| need(Some(o), "offset", rows)).transpose()?;

    // With no column the row count is the caller's word alone: a count no memory holds is an error, not an abort.
    let mut reasons = Vec::new();
    reasons
        .try_reserve_exact(rows)
        .map_err(|_| Error::InvalidSelect(format!("{rows} rows do not fit in memory")))?;
    reasons.resize(rows, KEPT);
    let adjusted = match score {
        Some(s) => match offset {
            Some(o) => s.iter().zip(o).map(|(s, o)| s + o + 0.0).collect(),
            None => s.iter().map(|s| s + 0.0).collect(),
        },
        None => Vec::new(),
    };
    // One branch-free pass per rule, from the lowest precedence to the highest: the last rule to mark a row
    // is the first it fails.
    if let Some((a, b)) = rm {
        mark(&mut reasons, RM_AGREEMENT, |r| a[r] <= b[r]);
    }
    if let (Some(c), Some(j), true) = (chosen, rejected, rules.margin.is_active()) {
        mark(&mut reasons, MARGIN, |r| !rules.margin.holds(c[r] - j[r]));
    }
    if let (Some(j), true) = (rejected, rules.rejected.is_active()) {
        mark(&mut reasons, REJECTED_SCORE, |r| !rules.rejected.holds(j[r]));
    }
    if let (Some(c), true) = (chosen, rules.chosen.is_active()) {
        mark(&mut reasons, CHOSEN_SCORE, |r| !rules.chosen.holds(c[r]));
    }
    // The adjusted score is NaN when the score or its offset is missing.
    let adjusted_column = score.map(|_| adjusted.as_slice());
    for column in [
        chosen,
        rejected,
        rm.map(|(a, _)| a),
        rm.map(|(_, b)| b),
        adjusted_column,
    ]
    .into_iter()
    .flatten()
    {
        mark(&mut reasons, MISSING, |r| column[r].is_nan());
    }
    Ok((reasons, adjusted))
}

/// Sets `code` on every row for which `fails` holds.
fn mark(reasons: &mut [u8], code: u8, fails: impl Fn(usize) -> bool) {
    for (r, reason) in reasons.iter_mut().enumerate() {
        *reason = if fails(r) { code } else { *reason };
    }
}

/// Rows kept from a group of `n` rows at fraction `f`: `ceil(f * n)`, with `f * n` first lowered by a relative
/// 1e-12 so that a product that is an integer in decimal but just above it in binary (0.3 * 10 =
/// 3.0000000000000004) is not rounded up.
pub fn quota(fraction: f64, n: usize) -> usize {
    let k = (fraction * n as f64 * (1.0 - 1e-12)).ceil();
    (k.max(0.0) as usize).min(n)
}

/// Drops (code [`TOP_FRACTION`]) every kept row outside the best [`quota`] of its group, ranked by `scores`
/// from high to low, ties to the earlier row. `groups[r]` indexes `fractions`; rows already dropped take no
/// part. The result does not depend on `threads`.
pub fn top_fraction(
    reasons: &mut [u8],
    scores: &[f64],
    groups: &[u32],
    fractions: &[f64],
    threads: usize,
) -> Result<(), Error> {
    let n = reasons.len();
    if n > u32::MAX as usize {
        return Err(Error::InvalidSelect(format!(
            "top fraction: {n} rows, more than 2^32 - 1"
        )));
    }
    if scores.len() != n || groups.len() != n {
        return Err(Error::InvalidSelect(format!(
            "top fraction: {n} rows but {} scores and {} groups",
            scores.len(),
            groups.len()
        )));
    }
    if let Some(f) = fractions.iter().find(|f| !(0.0..=1.0).contains(*f)) {
        return Err(Error::InvalidSelect(format!(
            "fractions must be within [0, 1], got {f}"
        )));
    }
    if let Some(g) = groups.iter().find(|&&g| g as usize >= fractions.len()) {
        return Err(Error::InvalidSelect(format!(
            "group {g} has no fraction ({} given)",
            fractions.len()
        )));
    }
    // Bucket the kept rows by group, in input order (a counting sort).
    let mut starts = vec![0usize; fractions.len() + 1];
    for (r, &g) in groups.iter().enumerate() {
        starts[g as usize + 1] += usize::from(reasons[r] == KEPT);
    }
    for g in 0..fractions.len() {
        starts[g + 1] += starts[g];
    }
    let mut order = vec![0u32; starts[fractions.len()]];
    let mut next = starts.clone();
    for (r, &g) in groups.iter().enumerate() {
        if reasons[r] == KEPT {
            order[next[g as usize]] = r as u32;
            next[g as usize] += 1;
        }
    }
    let mut slices = Vec::with_capacity(fractions.len());
    let mut rest = order.as_mut_slice();
    for g in 0..fractions.len() {
        let (head, tail) = rest.split_at_mut(starts[g + 1] - starts[g]);
        slices.push((fractions[g], head));
        rest = tail;
    }
    let cut = |(fraction, rows): (f64, &mut [u32])| drop_below_quota(fraction, rows, scores).to_vec();
    let dropped: Vec<Vec<u32>> = match pool(threads)? {
        None => slices.into_iter().map(cut).collect(),
        Some(pool) => pool.install(|| slices.into_par_iter().map(cut).collect()),
    };
    for r in dropped.into_iter().flatten() {
        reasons[r as usize] = TOP_FRACTION;
    }
    Ok(())
}

/// Orders `rows` so that the best [`quota`] come first (higher score, then the earlier row: a total order, so
/// the split is unique; NaN ranks lowest, -0.0 ties with 0.0) and returns the others.
fn drop_below_quota<'a>(fraction: f64, rows: &'a mut [u32], scores: &[f64]) -> &'a [u32] {
    let key = |r: u32| {
        let s = scores[r as usize];
        if s.is_nan() {
            f64::NEG_INFINITY
        } else {
            s + 0.0 // -0.0 + 0.0 is 0.0: total_cmp would rank -0.0 below 0.0
        }
    };
    let k = quota(fraction, rows.len());
    if k < rows.len() {
        rows.select_nth_unstable_by(k, |&a, &b| key(b).total_cmp(&key(a)).then(a.cmp(&b)));
    }
    &rows[k..]
}

/// A fast hash for short keys (group names), a word at a time (the multiply-rotate of FxHash).
#[derive(Default)]
struct WordHasher(u64);

impl WordHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
}

impl Hasher for WordHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            self.add(u64::from_le_bytes(chunk.try_into().expect("8 bytes")));
        }
        let mut last = [0u8; 8];
        last[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
        self.add(u64::from_le_bytes(last));
    }

    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// Dense ids for the values of a column across batches, in order of first appearance; null is a value too.
#[derive(Debug, Default)]
pub struct GroupIds {
    ids: HashMap<Vec<u8>, u32, BuildHasherDefault<WordHasher>>,
    names: Vec<Option<Vec<u8>>>,
    null: Option<u32>,
}

impl GroupIds {
    /// The id of every value, new values getting the next ids in row order. Parts of the rows are numbered on
    /// `threads` workers, each part by its own values in order of first appearance, and merged in row order:
    /// the result does not depend on `threads`. Each distinct value is checked to be UTF-8 (the names are
    /// text); the first row of one that is not is the error, and no id is given then.
    pub fn encode<R: ByteRows + ?Sized>(&mut self, values: &R, threads: usize) -> Result<Vec<u32>, Error> {
        let parts = map_chunks(values.len(), threads, |rows| local_ids(values, rows))?;
        let mut first_row = 0;
        for (distinct, ids) in &parts {
            let bad = distinct
                .iter()
                .position(|v| v.is_some_and(|bytes| utf8(bytes).is_none()));
            if let Some(bad) = bad {
                let at = ids.iter().position(|&id| id as usize == bad).unwrap_or_default();
                return Err(Error::InvalidUtf8 { text: first_row + at });
            }
            first_row += ids.len();
        }
        let mut out = Vec::with_capacity(values.len());
        for (distinct, ids) in parts {
            let global: Vec<u32> = distinct.into_iter().map(|v| self.id(v)).collect();
            out.extend(ids.iter().map(|&i| global[i as usize]));
        }
        Ok(out)
    }

    /// The id of `value`, a new one if it has none yet.
    fn id(&mut self, value: Option<&[u8]>) -> u32 {
        let next = self.names.len() as u32;
        let known = match value {
            Some(v) => self.ids.get(v).copied(),
            None => self.null,
        };
        if let Some(id) = known {
            return id;
        }
        match value {
            Some(v) => self.ids.insert(v.to_vec(), next),
            None => self.null.replace(next),
        };
        self.names.push(value.map(<[u8]>::to_vec));
        next
    }

    /// The values in id order.
    pub fn names(&self) -> &[Option<Vec<u8>>] {
        &self.names
    }
}

/// The distinct values of `values` in order of first appearance, and every row's index into them. Group
/// columns hold a few short values: a small direct-mapped cache of [`Sketch`]es answers most rows without
/// hashing the bytes; the hash map answers the rest.
fn local_ids<R: ByteRows + ?Sized>(values: &R, rows: Range<usize>) -> (Vec<Option<&[u8]>>, Vec<u32>) {
    const SLOTS: usize = 64;
    let mut index: HashMap<&[u8], u32, BuildHasherDefault<WordHasher>> = HashMap::default();
    let (mut distinct, mut null) = (Vec::new(), None);
    let mut cache = [(Sketch::EMPTY, 0u32); SLOTS];
    let mut ids = Vec::with_capacity(rows.len());
    for v in rows.map(|r| values.row(r)) {
        let Some(bytes) = v else {
            let id = *null.get_or_insert(distinct.len() as u32);
            if id as usize == distinct.len() {
                distinct.push(None);
            }
            ids.push(id);
            continue;
        };
        let sketch = Sketch::of(bytes);
        let slot = &mut cache[sketch.slot(SLOTS)];
        let id = if slot.0 == sketch && (sketch.is_exact() || distinct[slot.1 as usize] == Some(bytes)) {
            slot.1
        } else {
            let next = distinct.len() as u32;
            let id = *index.entry(bytes).or_insert(next);
            if id == next {
                distinct.push(v);
            }
            *slot = (sketch, id);
            id
        };
        ids.push(id);
    }
    (distinct, ids)
}

/// The length and the first and last 8 bytes of a byte string: equal sketches mean equal strings when the
/// length is at most 16.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Sketch {
    len: usize,
    head: u64,
    tail: u64,
}

impl Sketch {
    const EMPTY: Sketch = Sketch {
        len: usize::MAX,
        head: 0,
        tail: 0,
    };

    fn of(bytes: &[u8]) -> Self {
        let word = |part: &[u8]| {
            let mut w = [0u8; 8];
            w[..part.len()].copy_from_slice(part);
            u64::from_le_bytes(w)
        };
        let n = bytes.len();
        Sketch {
            len: n,
            head: word(&bytes[..n.min(8)]),
            tail: word(&bytes[n.saturating_sub(8)..]),
        }
    }

    fn is_exact(&self) -> bool {
        self.len <= 16
    }

    /// A slot among `slots` (a power of two).
    fn slot(&self, slots: usize) -> usize {
        let mixed = (self.head ^ self.tail.rotate_left(29) ^ self.len as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        (mixed >> (64 - slots.trailing_zeros())) as usize
    }
}

/// One answer of every row: text `r`, or with bounds the texts `bounds[r]..bounds[r + 1]` (its turns).
pub struct Answers<'a, R: ByteRows + ?Sized> {
    pub texts: &'a R,
    pub bounds: Option<&'a [usize]>,
}

impl<R: ByteRows + ?Sized> Answers<'_, R> {
    fn rows(&self) -> usize {
        self.bounds.map_or(self.texts.len(), |b| b.len().saturating_sub(1))
    }

    fn check(&self) -> Result<(), Error> {
        self.bounds
            .map_or(Ok(()), |b| crate::rows::check_bounds(self.texts.len(), b))
    }

    fn texts(&self, r: usize) -> Range<usize> {
        self.bounds.map_or(r..r + 1, |b| b[r]..b[r + 1])
    }

    /// Row `r`'s characters, by [`utf8_chars`] over each text: the number of Unicode scalar values for valid
    /// UTF-8, and defined for any bytes, so that no validation pass is needed (null: 0).
    fn chars(&self, r: usize) -> u64 {
        self.texts(r).map(|t| self.texts.row(t).map_or(0, utf8_chars)).sum()
    }

    /// Row `r`'s bytes: an upper bound on its characters, and a quarter of it (rounded up) a lower bound.
    fn bytes(&self, r: usize) -> u64 {
        self.texts(r)
            .map(|t| self.texts.row(t).map_or(0, |b| b.len() as u64))
            .sum()
    }
}

/// For each row, whether the ratio of its chosen answer's characters to its rejected answer's
/// ([`length_ratio`]) falls outside `bounds`; rows that `only` (one flag per row) leaves out are `false` and
/// their texts are not read. The chosen answer's characters are counted only when its byte count cannot settle
/// the rule: a character has 1 to 4 bytes and the ratio grows with the chosen length, so a ratio that holds
/// both at the byte count and at a quarter of it holds at the character count (most rows: the counting reads
/// the rejected answers, not both).
pub fn length_ratio_fails<R: ByteRows + ?Sized>(
    chosen: &Answers<'_, R>,
    rejected: &Answers<'_, R>,
    only: Option<&[bool]>,
    bounds: Bounds,
    threads: usize,
) -> Result<Vec<bool>, Error> {
    chosen.check()?;
    rejected.check()?;
    let rows = chosen.rows();
    if rejected.rows() != rows {
        return Err(Error::InvalidSelect(format!(
            "{rows} chosen answers for {} rejected ones",
            rejected.rows()
        )));
    }
    if let Some(only) = only {
        if only.len() != rows {
            return Err(Error::InvalidSelect(format!(
                "the row flags have {} entries for {rows} rows",
                only.len()
            )));
        }
    }
    map_rows(rows, threads, |(): &mut (), r| {
        if !only.is_none_or(|o| o[r]) {
            return false;
        }
        let rejected = rejected.chars(r);
        let most = chosen.bytes(r);
        let settled =
            bounds.holds(length_ratio(most, rejected)) && bounds.holds(length_ratio(most.div_ceil(4), rejected));
        !settled && !bounds.holds(length_ratio(chosen.chars(r), rejected))
    })
}

/// The characters of `text`: the bytes that start a UTF-8 sequence (are not `0b10xx_xxxx`), counted 64 at a time
/// into a byte-wide counter so that the loop vectorises, and at least a quarter of the bytes (rounded up). For
/// valid UTF-8 that is the number of Unicode scalar values (a character has at most 4 bytes); for other bytes
/// (runs of continuation bytes) the floor keeps the count within the bounds [`length_ratio_fails`] settles rows by.
fn utf8_chars(text: &[u8]) -> u64 {
    let mut chunks = text.chunks_exact(64);
    let mut continuation = 0u64;
    for chunk in &mut chunks {
        let mut n = 0u8;
        for &b in chunk {
            n += u8::from((b as i8) < -0x40);
        }
        continuation += u64::from(n);
    }
    continuation += chunks.remainder().iter().filter(|&&b| (b as i8) < -0x40).count() as u64;
    (text.len() as u64 - continuation).max((text.len() as u64).div_ceil(4))
}

/// The mean of each row's values (row `r` = `values[bounds[r]..bounds[r + 1]]`); NaN for a row without values
/// or with a NaN among them.
pub fn segment_means(values: &[f64], bounds: &[usize]) -> Result<Vec<f64>, Error> {
    crate::rows::check_bounds(values.len(), bounds)?;
    Ok(bounds
        .windows(2)
        .map(|w| {
            let part = &values[w[0]..w[1]];
            if part.is_empty() {
                f64::NAN
            } else {
                part.iter().sum::<f64>() / part.len() as f64
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quota_rounds_decimal_products_as_written() {
        assert_eq!(quota(0.3, 10), 3);
        assert_eq!(quota(0.29, 100), 29);
        assert_eq!(quota(0.1, 30), 3);
        assert_eq!(quota(0.1, 31), 4);
        assert_eq!(quota(0.1, 5), 1);
        assert_eq!(quota(0.0, 5), 0);
        assert_eq!(quota(1.0, 5), 5);
        assert_eq!(quota(0.7, 10), 7);
    }

    #[test]
    fn top_fraction_breaks_ties_by_row_and_skips_dropped_rows() {
        let scores = [1.0, 2.0, 2.0, 0.5, 2.0, 3.0];
        let groups = [0, 0, 0, 0, 0, 1];
        let mut reasons = vec![KEPT, KEPT, KEPT, KEPT, MARGIN, KEPT];
        // Group 0 has 4 kept rows (row 4 is already out): ceil(0.5 * 4) = 2 stay, rows 1 and 2 (the best
        // score, 2.0, twice); group 1 keeps none.
        top_fraction(&mut reasons, &scores, &groups, &[0.5, 0.0], 1).unwrap();
        assert_eq!(reasons, [TOP_FRACTION, KEPT, KEPT, TOP_FRACTION, MARGIN, TOP_FRACTION]);
        let mut again = vec![KEPT, KEPT, KEPT, KEPT, MARGIN, KEPT];
        top_fraction(&mut again, &scores, &groups, &[0.5, 0.0], 2).unwrap();
        assert_eq!(again, reasons);
    }

    #[test]
    fn row_rules_follow_precedence() {
        let chosen = [5.0, f64::NAN, 1.0, 5.0, 5.0, 5.0];
        let rejected = [1.0, 1.0, 0.0, 9.0, 4.5, 1.0];
        let rm_chosen = [1.0, 1.0, 1.0, 1.0, 1.0, 0.5];
        let rm_rejected = [0.0, 0.0, 0.0, 0.0, 0.0, 0.5];
        let values = RowValues {
            chosen: Some(&chosen),
            rejected: Some(&rejected),
            rm_chosen: Some(&rm_chosen),
            rm_rejected: Some(&rm_rejected),
            ..Default::default()
        };
        let rules = RowRules {
            chosen: Bounds {
                min: Some(2.0),
                max: None,
            },
            rejected: Bounds {
                min: None,
                max: Some(8.0),
            },
            margin: Bounds {
                min: Some(1.0),
                max: None,
            },
            rm_agreement: true,
        };
        let (reasons, adjusted) = row_reasons(&values, &rules, 6).unwrap();
        assert_eq!(
            reasons,
            [KEPT, MISSING, CHOSEN_SCORE, REJECTED_SCORE, MARGIN, RM_AGREEMENT]
        );
        assert!(adjusted.is_empty());
        assert!(row_reasons(&RowValues::default(), &rules, 6).is_err());
    }

    #[test]
    fn adjusted_scores_add_offsets_and_drop_negative_zero() {
        let score = [-0.0, 1.0, f64::NAN];
        let offset = [0.0, -0.25, 0.0];
        let values = RowValues {
            score: Some(&score),
            offset: Some(&offset),
            ..Default::default()
        };
        let (reasons, adjusted) = row_reasons(&values, &RowRules::default(), 3).unwrap();
        assert_eq!(reasons, [KEPT, KEPT, MISSING]);
        assert!(adjusted[0].to_bits() == 0.0f64.to_bits() && adjusted[1].to_bits() == 0.75f64.to_bits());
    }

    #[test]
    fn a_missing_offset_is_a_missing_score() {
        let score = [1.0, 2.0, 3.0];
        let offset = [0.0, f64::NAN, 0.5];
        let values = RowValues {
            score: Some(&score),
            offset: Some(&offset),
            ..Default::default()
        };
        let (reasons, _) = row_reasons(&values, &RowRules::default(), 3).unwrap();
        assert_eq!(reasons, [KEPT, MISSING, KEPT]);
    }

    #[test]
    fn row_counts_are_checked_before_allocating() {
        let chosen = [1.0, 2.0];
        let values = RowValues {
            chosen: Some(&chosen),
            ..Default::default()
        };
        // No rule reads the chosen scores: their length still has to be the row count.
        let err = row_reasons(&values, &RowRules::default(), 1 << 50).unwrap_err();
        assert!(err.to_string().contains("chosen score has 2 rows"), "{err}");
        let err = row_reasons(&RowValues::default(), &RowRules::default(), usize::MAX).unwrap_err();
        assert!(err.to_string().contains("do not fit in memory"), "{err}");
    }

    #[test]
    fn negative_zero_ties_with_zero() {
        for scores in [[-0.0, 0.0], [0.0, -0.0]] {
            let mut reasons = vec![KEPT, KEPT];
            top_fraction(&mut reasons, &scores, &[0, 0], &[0.5], 1).unwrap();
            assert_eq!(
                reasons,
                [KEPT, TOP_FRACTION],
                "{scores:?}: the tie goes to the earlier row"
            );
        }
    }

    #[test]
    fn group_ids_follow_first_appearance_across_batches() {
        let mut ids = GroupIds::default();
        let first: [Option<&[u8]>; 5] = [Some(b"b"), None, Some(b"a"), Some(b"a"), Some(b"b")];
        assert_eq!(ids.encode(&first[..], 2).unwrap(), [0, 1, 2, 2, 0]);
        let second: [Option<&[u8]>; 3] = [Some(b"a"), Some(b"c"), None];
        assert_eq!(ids.encode(&second[..], 1).unwrap(), [2, 3, 1]);
        let names: Vec<Option<&[u8]>> = ids.names().iter().map(|n| n.as_deref()).collect();
        assert_eq!(names, [Some(b"b".as_slice()), None, Some(b"a"), Some(b"c")]);
    }

    #[test]
    fn group_ids_of_bytes_that_are_not_utf8_are_an_error() {
        // Found by fuzzing: two values that are not UTF-8 got two ids and one name (both lossily "\u{fffd}").
        let mut ids = GroupIds::default();
        let values: [Option<&[u8]>; 4] = [Some(b"a"), None, Some(b"\xff"), Some(b"\xfe")];
        assert_eq!(ids.encode(&values[..], 1), Err(Error::InvalidUtf8 { text: 2 }));
        assert!(ids.names().is_empty(), "no id is given when a value is refused");
        let many: Vec<Option<&[u8]>> = (0..10_000)
            .map(|r| Some(if r == 9_000 { b"\xff".as_slice() } else { b"ok" }))
            .collect();
        assert_eq!(ids.encode(many.as_slice(), 2), Err(Error::InvalidUtf8 { text: 9_000 }));
    }

    #[test]
    fn group_ids_do_not_depend_on_threads_or_parts() {
        // Runs, repeats and new values in later parts (over several 4096-row parts), against a plain loop; long
        // values that share their first and last 8 bytes.
        let names: Vec<Vec<u8>> = (0..40)
            .map(|i| match i % 2 {
                0 => format!("group {i}").into_bytes(),
                _ => format!("same head {i:03} same tail").into_bytes(),
            })
            .collect();
        let values: Vec<Option<&[u8]>> = (0..30_000u64)
            .map(|r| {
                let k = (r * 7919 % 104_729 / 97 + r / 1000) % 41;
                (k < 40).then(|| names[k as usize].as_slice())
            })
            .collect();
        let mut expected_names: Vec<Option<&[u8]>> = Vec::new();
        let expected: Vec<u32> = values
            .iter()
            .map(|v| {
                if let Some(i) = expected_names.iter().position(|n| n == v) {
                    i as u32
                } else {
                    expected_names.push(*v);
                    expected_names.len() as u32 - 1
                }
            })
            .collect();
        for threads in [1, 2, 3] {
            let mut ids = GroupIds::default();
            assert_eq!(ids.encode(values.as_slice(), threads).unwrap(), expected);
            let got: Vec<Option<&[u8]>> = ids.names().iter().map(|n| n.as_deref()).collect();
            assert_eq!(got, expected_names);
        }
    }

    #[test]
    fn lengths_and_means() {
        let texts = [
            Some("héllo".as_bytes()),
            None,
            Some(b"ab".as_slice()),
            Some(b"".as_slice()),
        ];
        let turns = Answers {
            texts: &texts[..],
            bounds: Some(&[0, 2, 3, 4]),
        };
        assert_eq!((0..3).map(|r| turns.chars(r)).collect::<Vec<_>>(), [5, 2, 0]);
        assert_eq!((0..3).map(|r| turns.bytes(r)).collect::<Vec<_>>(), [6, 2, 0]);
        let plain = Answers {
            texts: &texts[..],
            bounds: None,
        };
        assert_eq!((0..4).map(|r| plain.chars(r)).collect::<Vec<_>>(), [5, 0, 2, 0]);
        assert!(Answers {
            texts: &texts[..],
            bounds: Some(&[0, 5])
        }
        .check()
        .is_err());
        let means = segment_means(&[1.0, 2.0, 3.0, f64::NAN], &[0, 3, 3, 4]).unwrap();
        assert_eq!(means[0].to_bits(), 2.0f64.to_bits());
        assert!(means[1].is_nan() && means[2].is_nan());
        assert_eq!(length_ratio(0, 0).to_bits(), 1.0f64.to_bits());
        let long = "añ€😀x".repeat(40);
        assert_eq!(utf8_chars(long.as_bytes()), long.chars().count() as u64);
        assert!(length_ratio(3, 0).is_infinite());
    }

    #[test]
    fn continuation_bytes_count_at_least_a_quarter() {
        // Found by fuzzing: 8 continuation bytes counted as 0 characters, yet the rule settled the row by its
        // byte counts (8 and 2, both within the bounds), so the counted ratio 0 was never checked.
        assert_eq!(utf8_chars(&[0x80; 8]), 2);
        assert_eq!(utf8_chars(b"\xff\x80\x80\x80\x80"), 2);
        let chosen: [Option<&[u8]>; 1] = [Some(&[0x80; 8])];
        let rejected: [Option<&[u8]>; 1] = [Some(b"a")];
        let (c, r) = (
            Answers {
                texts: &chosen[..],
                bounds: None,
            },
            Answers {
                texts: &rejected[..],
                bounds: None,
            },
        );
        let within = |min, max| Bounds {
            min: Some(min),
            max: Some(max),
        };
        assert_eq!(length_ratio_fails(&c, &r, None, within(1.0, 10.0), 1).unwrap(), [false]);
        assert_eq!(length_ratio_fails(&c, &r, None, within(3.0, 10.0), 1).unwrap(), [true]);
        assert_eq!(length_ratio_fails(&c, &r, None, within(0.0, 1.5), 1).unwrap(), [true]);
    }

    /// The reference: both answers' characters counted, then the rule.
    fn reference(chosen: &[&str], rejected: &[&str], bounds: Bounds) -> Vec<bool> {
        let chars = |t: &str| t.chars().count() as u64;
        (0..chosen.len())
            .map(|r| !bounds.holds(length_ratio(chars(chosen[r]), chars(rejected[r]))))
            .collect()
    }

    #[test]
    fn length_ratio_fails_equals_counting_both_answers() {
        fn as_rows(t: &[String]) -> Vec<Option<&[u8]>> {
            t.iter().map(|s| Some(s.as_bytes())).collect()
        }
        // ASCII, 2-, 3- and 4-byte characters, empty answers, ratios on both sides of the bounds.
        let pieces = ["a", "é", "€", "😀", "ab c", ""];
        let mut state = 7u64;
        let mut next = |n: u64| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (state >> 33) % n
        };
        let mut answer = || (0..next(12)).map(|_| pieces[next(6) as usize]).collect::<String>();
        let chosen: Vec<String> = (0..3000).map(|_| answer()).collect();
        let rejected: Vec<String> = (0..3000).map(|_| answer()).collect();
        let (c_rows, r_rows) = (as_rows(&chosen), as_rows(&rejected));
        let c: Vec<&str> = chosen.iter().map(String::as_str).collect();
        let j: Vec<&str> = rejected.iter().map(String::as_str).collect();
        let only: Vec<bool> = (0..3000).map(|r| r % 5 != 0).collect();
        for bounds in [
            Bounds {
                min: None,
                max: Some(3.0),
            },
            Bounds {
                min: Some(0.5),
                max: Some(2.0),
            },
            Bounds {
                min: Some(1.0),
                max: None,
            },
            Bounds {
                min: Some(1.0),
                max: Some(1.0),
            },
        ] {
            let expected = reference(&c, &j, bounds);
            for threads in [1, 2] {
                let (a, b) = (
                    Answers {
                        texts: &c_rows[..],
                        bounds: None,
                    },
                    Answers {
                        texts: &r_rows[..],
                        bounds: None,
                    },
                );
                assert_eq!(
                    length_ratio_fails(&a, &b, None, bounds, threads).unwrap(),
                    expected,
                    "{bounds:?}"
                );
                let flagged = length_ratio_fails(&a, &b, Some(&only), bounds, threads).unwrap();
                let want: Vec<bool> = expected.iter().zip(&only).map(|(&e, &o)| e && o).collect();
                assert_eq!(flagged, want);
            }
            // The same answers as one-text turns.
            let one: Vec<usize> = (0..=3000).collect();
            let (a, b) = (
                Answers {
                    texts: &c_rows[..],
                    bounds: Some(&one),
                },
                Answers {
                    texts: &r_rows[..],
                    bounds: Some(&one),
                },
            );
            assert_eq!(length_ratio_fails(&a, &b, None, bounds, 2).unwrap(), expected);
        }
        let short = Answers {
            texts: &c_rows[..10],
            bounds: None,
        };
        let all = Answers {
            texts: &r_rows[..],
            bounds: None,
        };
        assert!(length_ratio_fails(&short, &all, None, Bounds::default(), 1).is_err());
    }
}
