//! A bit filter over 64-bit hashes: the first test of every training n-gram against a benchmark index.
//!
//! One bit per bucket of hashes (their top bits), set where some indexed hash falls: most n-grams of a training
//! row miss, and this small table (cache-resident) answers them without touching the index's hash map. A hash
//! that passes is only a candidate, looked up in the map and confirmed by its tokens.

/// About 16 bits per indexed hash, between 64 Kib and 256 Mib.
const BITS_PER_HASH: usize = 16;
const MIN_BITS: usize = 1 << 16;
const MAX_BITS: usize = 1 << 28;

#[derive(Debug)]
pub(crate) struct Filter {
    words: Vec<u64>,
    /// A hash's bucket is its top bits: `hash >> shift`.
    shift: u32,
}

impl Filter {
    /// The filter of `hashes` (`len` of them).
    pub(crate) fn new<'a>(len: usize, hashes: impl Iterator<Item = &'a u64>) -> Self {
        let bits = (len * BITS_PER_HASH).next_power_of_two().clamp(MIN_BITS, MAX_BITS);
        let mut filter = Filter {
            words: vec![0; bits / 64],
            shift: 64 - bits.trailing_zeros(),
        };
        for &h in hashes {
            let b = filter.bucket(h);
            filter.words[b / 64] |= 1 << (b % 64);
        }
        filter
    }

    /// A filter every hash passes (tests of what follows the filter).
    #[cfg(test)]
    pub(crate) fn everything() -> Self {
        Filter {
            words: vec![u64::MAX; MIN_BITS / 64],
            shift: 64 - MIN_BITS.trailing_zeros(),
        }
    }

    fn bucket(&self, h: u64) -> usize {
        (h >> self.shift) as usize
    }

    /// Whether `h` may be one of the filter's hashes (a bucket of one is set): [`Filter::candidates`], one hash.
    #[cfg(test)]
    fn maybe_contains(&self, h: u64) -> bool {
        let b = self.bucket(h);
        self.words[b / 64] & (1 << (b % 64)) != 0
    }

    /// Sets `out` to the positions in `hashes` of those that may be the filter's, in order. Without a branch a
    /// hash: each position is written at the end of the list, which moves on by the hash's bit (a branch on it,
    /// as the one-by-one test takes, is mispredicted at random: about one hash in twenty passes).
    pub(crate) fn candidates(&self, hashes: &[u64], out: &mut Vec<u32>) {
        out.clear();
        out.resize(hashes.len(), 0);
        let mut len = 0;
        for (i, &h) in hashes.iter().enumerate() {
            let b = self.bucket(h);
            // SAFETY: `len <= i < out.len()`; the shift keeps `b / 64 < words.len()`.
            unsafe {
                *out.get_unchecked_mut(len) = i as u32;
                len += (*self.words.get_unchecked(b / 64) >> (b % 64)) as usize & 1;
            }
        }
        out.truncate(len);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn candidates_are_the_hashes_that_pass_one_by_one(
            indexed in prop::collection::vec(any::<u64>(), 0..3000),
            probes in prop::collection::vec(any::<u64>(), 0..100),
            repeat in 0usize..4,
        ) {
            // Some probes are indexed, so that both answers occur.
            let filter = Filter::new(indexed.len(), indexed.iter());
            let hashes: Vec<u64> = probes.iter().chain(indexed.iter().step_by(7).take(repeat * 10)).copied().collect();
            let expected: Vec<u32> =
                (0..hashes.len() as u32).filter(|&i| filter.maybe_contains(hashes[i as usize])).collect();
            let mut out = vec![7];
            filter.candidates(&hashes, &mut out);
            prop_assert_eq!(&out, &expected);
        }
    }

    #[test]
    fn indexed_hashes_always_pass() {
        let indexed: Vec<u64> = (0..10_000u64).map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15)).collect();
        let filter = Filter::new(indexed.len(), indexed.iter());
        let mut out = Vec::new();
        filter.candidates(&indexed, &mut out);
        assert_eq!(out.len(), indexed.len());
        let others: Vec<u64> = (0..10_000u64)
            .map(|i| ((i + 1) << 32).wrapping_mul(0xff51_afd7_ed55_8ccd))
            .collect();
        filter.candidates(&others, &mut out);
        assert!(out.len() < others.len() / 5, "{} of {} passed", out.len(), others.len());
    }
}
