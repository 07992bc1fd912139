//! The shingle sets of rows, for exact near-duplicate verification: per row, its 64-bit shingle hashes as its
//! text gives them (in order, repeats kept), all rows in one buffer. Memory: 8 bytes per shingle of a row, plus 8
//! per row. A row is sorted and its repeats dropped ([`SortedRows`]) only when a candidate pair first compares it:
//! most rows share no LSH bucket with another and never are (sorting every row took about a tenth of the exact
//! path's hashing, docs/benchmarks.md).

use std::cell::OnceCell;

use crate::Error;

/// Rows of `u64` shingle hashes, one after the other.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShingleSets {
    /// Row `r` is `hashes[offsets[r]..offsets[r + 1]]`.
    offsets: Vec<usize>,
    hashes: Vec<u64>,
}

impl Default for ShingleSets {
    fn default() -> Self {
        Self {
            offsets: vec![0],
            hashes: Vec::new(),
        }
    }
}

impl ShingleSets {
    /// Rows given by `offsets` (from 0, non-decreasing, ending at `hashes.len()`) over `hashes`, each row's hashes
    /// in any order, repeats allowed.
    pub fn new(offsets: Vec<usize>, hashes: Vec<u64>) -> Result<Self, Error> {
        let bad = |why: &str| Err(Error::InvalidMinHash(format!("shingle sets: {why}")));
        if offsets.first() != Some(&0) || offsets.last() != Some(&hashes.len()) {
            return bad("offsets must start at 0 and end at the number of hashes");
        }
        if offsets.windows(2).any(|w| w[0] > w[1]) {
            return bad("offsets must not decrease");
        }
        Ok(Self { offsets, hashes })
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.offsets.len() - 1
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The hashes of row `r`, as they were given.
    pub fn row(&self, r: usize) -> &[u64] {
        &self.hashes[self.offsets[r]..self.offsets[r + 1]]
    }

    /// Appends a row made of `hashes` (any order, repeats allowed).
    pub fn push(&mut self, hashes: &[u64]) {
        self.hashes.extend_from_slice(hashes);
        self.offsets.push(self.hashes.len());
    }

    /// Appends the rows of `other`.
    pub fn extend(&mut self, other: &ShingleSets) {
        let base = self.hashes.len();
        self.hashes.extend_from_slice(&other.hashes);
        self.offsets.extend(other.offsets[1..].iter().map(|&o| o + base));
    }

    /// The row offsets (`len() + 1` of them) and the hashes, for handing the sets over without a copy.
    pub fn into_parts(self) -> (Vec<usize>, Vec<u64>) {
        (self.offsets, self.hashes)
    }
}

/// The rows of a [`ShingleSets`] as sets (sorted, distinct), each made on its first use and kept while this
/// lives: 16 bytes per row, plus 8 per distinct shingle of each row used.
pub struct SortedRows<'a> {
    sets: &'a ShingleSets,
    sorted: Vec<OnceCell<Box<[u64]>>>,
}

impl<'a> SortedRows<'a> {
    pub fn new(sets: &'a ShingleSets) -> Self {
        Self {
            sets,
            sorted: (0..sets.len()).map(|_| OnceCell::new()).collect(),
        }
    }

    /// Row `r`'s distinct hashes, ascending.
    pub fn row(&self, r: usize) -> &[u64] {
        self.sorted[r].get_or_init(|| {
            let mut set = self.sets.row(r).to_vec();
            set.sort_unstable();
            set.dedup();
            set.into_boxed_slice()
        })
    }
}

/// Whether the Jaccard similarity `|x ∩ y| / |x ∪ y|` of two sorted, distinct sets is at least `threshold`,
/// computed as that f64 division; two empty sets are not similar.
pub fn jaccard_reaches(x: &[u64], y: &[u64], threshold: f64) -> bool {
    let (short, long) = if x.len() <= y.len() { (x, y) } else { (y, x) };
    if long.is_empty() {
        return false;
    }
    // |x ∩ y| / |x ∪ y| <= |short| / |long|, and rounding keeps that order: no merge needed below it.
    if (short.len() as f64 / long.len() as f64) < threshold {
        return false;
    }
    let common = intersection_size(short, long);
    common as f64 / (x.len() + y.len() - common) as f64 >= threshold
}

/// `|x ∩ y|` of two sorted, distinct sets, by one merge.
fn intersection_size(x: &[u64], y: &[u64]) -> usize {
    let (mut in_x, mut in_y, mut common) = (0, 0, 0);
    while in_x < x.len() && in_y < y.len() {
        let (here, there) = (x[in_x], y[in_y]);
        common += usize::from(here == there);
        in_x += usize::from(here <= there);
        in_y += usize::from(there <= here);
    }
    common
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_keep_their_order_and_are_sorted_when_used() {
        let mut sets = ShingleSets::default();
        sets.push(&[5, 1, 5, 3]);
        sets.push(&[]);
        sets.push(&[2, 2]);
        assert_eq!(sets.len(), 3);
        assert_eq!(sets.row(0), [5, 1, 5, 3]);
        assert!(sets.row(1).is_empty());
        let sorted = SortedRows::new(&sets);
        assert_eq!(sorted.row(0), [1, 3, 5]);
        assert!(sorted.row(1).is_empty());
        assert_eq!(sorted.row(2), [2]);
        assert_eq!(sorted.row(0), [1, 3, 5], "the second use reads the same set");
        let mut more = sets.clone();
        more.extend(&sets);
        assert_eq!(more.row(5), [2, 2]);
        let (offsets, hashes) = more.into_parts();
        assert_eq!(ShingleSets::new(offsets, hashes).unwrap().row(3), [5, 1, 5, 3]);
    }

    #[test]
    fn bad_offsets_are_errors() {
        assert!(ShingleSets::new(vec![], vec![]).is_err());
        assert!(ShingleSets::new(vec![0, 2], vec![1]).is_err());
        assert!(ShingleSets::new(vec![0, 2, 1, 2], vec![1, 2]).is_err());
        assert!(ShingleSets::new(vec![0, 2], vec![2, 1]).is_ok());
        assert!(ShingleSets::new(vec![0, 2], vec![1, 1]).is_ok());
        assert!(ShingleSets::new(vec![0, 0, 2], vec![1, 2]).is_ok());
    }

    #[test]
    fn jaccard_is_exact() {
        // |∩| = 2, |∪| = 5: 0.4.
        assert!(jaccard_reaches(&[1, 2, 3, 4], &[3, 4, 9], 0.4));
        assert!(!jaccard_reaches(&[1, 2, 3, 4], &[3, 4, 9], 0.400_001));
        assert!(jaccard_reaches(&[7], &[7], 1.0));
        assert!(!jaccard_reaches(&[], &[], 0.0));
        assert!(jaccard_reaches(&[], &[1], 0.0));
        // 7 of 10: 0.7 as the division gives it, whatever 0.7's rounding.
        let x: Vec<u64> = (0..10).collect();
        let y: Vec<u64> = (0..7).collect();
        assert_eq!(jaccard_reaches(&x, &y, 0.7), 7.0 / 10.0 >= 0.7);
        assert_eq!(intersection_size(&[1, 3, 5, 7], &[2, 3, 4, 7, 8]), 2);
    }
}
