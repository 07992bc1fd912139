//! Stable n-gram hashing, independent of threads, runs and machines.
//!
//! A token hashes to `xxh3_64(token bytes, SEED)`. An n-gram hashes to the polynomial
//! `sum(t[k] * BASE^(n-1-k))` (mod 2^64) of its token hashes, finalised by the murmur3 64-bit mixer; the
//! polynomial rolls, so each further window costs two multiplications. Hashes only find candidates:
//! every hit is confirmed by comparing tokens.

use xxhash_rust::xxh3::xxh3_64_with_seed;

use crate::text::Tokens;

/// The fixed seed of every stored or compared hash (the ASCII bytes of "skyfiltr").
pub const SEED: u64 = 0x736b_7966_696c_7472;

/// Largest supported n (a sanity bound: longer n-grams are no use for contamination).
pub const MAX_N: usize = 64;

/// Hash of one token.
pub fn token_hash(token: &str) -> u64 {
    xxh3_64_with_seed(token.as_bytes(), SEED)
}

/// Odd multiplier of the rolling polynomial.
const BASE: u64 = 0x9e37_79b9_7f4a_7c15;

/// murmur3's 64-bit finaliser: spreads the polynomial's bits before they index hash tables.
fn mix(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// Hash of the n-gram whose token hashes are `window`.
pub fn ngram_hash(window: &[u64]) -> u64 {
    mix(window
        .iter()
        .fold(0u64, |acc, &t| acc.wrapping_mul(BASE).wrapping_add(t)))
}

/// Fills `out` with the hash of every n-gram of `tokens`, in text order (`tokens.len() - n + 1` of them,
/// none when there are fewer than `n` tokens). `token_hashes` is scratch space.
pub fn ngram_hashes(tokens: &Tokens, n: usize, token_hashes: &mut Vec<u64>, out: &mut Vec<u64>) {
    out.clear();
    token_hashes.clear();
    if tokens.len() < n {
        return;
    }
    token_hashes.extend(tokens.bytes().map(|token| xxh3_64_with_seed(token, SEED)));
    // Roll the polynomial: drop the oldest token's term, shift, add the newest token.
    let top = (1..n).fold(1u64, |p, _| p.wrapping_mul(BASE)); // BASE^(n-1)
    let mut acc = token_hashes[..n]
        .iter()
        .fold(0u64, |a, &t| a.wrapping_mul(BASE).wrapping_add(t));
    out.push(mix(acc));
    for i in n..token_hashes.len() {
        acc = acc
            .wrapping_sub(token_hashes[i - n].wrapping_mul(top))
            .wrapping_mul(BASE)
            .wrapping_add(token_hashes[i]);
        out.push(mix(acc));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text::Tokenizer;

    fn hashes(text: &str, n: usize) -> Vec<u64> {
        let mut tokens = Tokens::default();
        Tokenizer::Words.tokenize_into(text, &mut tokens);
        let (mut scratch, mut out) = (Vec::new(), Vec::new());
        ngram_hashes(&tokens, n, &mut scratch, &mut out);
        out
    }

    #[test]
    fn same_ngram_same_hash_anywhere() {
        let a = hashes("aa bb cc dd", 3);
        let b = hashes("zz aa BB cc dd", 3);
        assert_eq!(a.len(), 2);
        assert_eq!(b.len(), 3);
        assert_eq!(a[0], b[1]);
        assert_eq!(a[1], b[2]);
        assert_ne!(a[0], a[1]);
    }

    #[test]
    fn rolling_equals_direct() {
        let mut tokens = Tokens::default();
        Tokenizer::Words.tokenize_into("aa bb cc dd ee ff gg hh ii jj", &mut tokens);
        let direct: Vec<u64> = tokens
            .iter()
            .map(token_hash)
            .collect::<Vec<_>>()
            .windows(4)
            .map(ngram_hash)
            .collect();
        assert_eq!(hashes("aa bb cc dd ee ff gg hh ii jj", 4), direct);
    }

    #[test]
    fn too_short_has_no_ngrams() {
        assert!(hashes("aa bb", 3).is_empty());
        assert_eq!(hashes("aa bb cc", 3).len(), 1);
    }

    #[test]
    fn token_boundaries_matter() {
        // "ab c" and "a bc" must not collide through concatenation.
        let ab_cd = ngram_hash(&[token_hash("ab"), token_hash("cd")]);
        assert_ne!(ab_cd, ngram_hash(&[token_hash("abc"), token_hash("d")]));
    }

    #[test]
    fn hashes_are_stable_across_releases() {
        // Pinned values (computed independently with the Python `xxhash` package): a change here
        // silently invalidates stored hashes, so it must be deliberate.
        assert_eq!(token_hash("reward"), 0xe392_f2c2_6015_784d);
        assert_eq!(
            ngram_hash(&[token_hash("reward"), token_hash("model")]),
            0x13ac_42d4_3917_081e
        );
    }
}
