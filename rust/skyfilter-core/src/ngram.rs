//! N-gram hashing.
//!
//! A token hashes by one of two [`TokenHash`] functions, and its n-grams by a rolling function of the token hashes:
//!
//! * `Stable`: `xxh3_64(token bytes, SEED)`, the same in every process, machine and release, for hashes that are
//!   stored or compared between processes (MinHash signatures). An n-gram hashes to the polynomial
//!   `sum(t[k] * BASE^(n-1-k))` (mod 2^64) of its token hashes, finalised by murmur3's 64-bit mixer; the polynomial
//!   rolls, so each further window costs two multiplications and the mixer.
//! * `Local`: cheaper and free to change between releases, for hashes that never leave the process (the
//!   contamination index and the rows matched against it). A token of up to 16 bytes hashes by one folded
//!   multiplication, whose every bit depends on every byte. An n-gram of up to [`CYCLIC_MAX_N`] tokens hashes to
//!   the XOR of its token hashes, each rotated left by its distance from the window's end
//!   (`t[k].rotate_left(n-1-k)`, a cyclic polynomial, as buzhash): it rolls by a rotation and two XORs, without a
//!   multiplication or a finaliser (the token hashes are already mixed). Longer n-grams take the polynomial above,
//!   finished by one folded multiplication (see [`CYCLIC_MAX_N`] for why).
//!
//! Hashes only find candidates: every hit is confirmed by comparing tokens.

use xxhash_rust::xxh3::xxh3_64_with_seed;

use crate::text::Tokens;

/// The fixed seed of every stored or compared hash (the ASCII bytes of "skyfiltr").
pub const SEED: u64 = 0x736b_7966_696c_7472;

/// Largest supported n (a sanity bound: longer n-grams are no use for contamination).
pub const MAX_N: usize = 64;

/// Which hash of its tokens an n-gram hash is built on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenHash {
    /// [`token_hash`]: pinned by tests, for hashes that are stored or compared between processes.
    Stable,
    /// [`local_token_hash`]: one multiplication and no branch on the length of a token of up to 16 bytes (most
    /// words), free to change between releases: for hashes that never leave the process.
    Local,
}

/// Stable hash of one token.
pub fn token_hash(token: &str) -> u64 {
    xxh3_64_with_seed(token.as_bytes(), SEED)
}

/// Odd factors of [`local_token_hash`] whose top byte is `0xff`, a byte UTF-8 never holds: XORed with at most
/// eight bytes of a token (zeros past its end) they never give 0, which would absorb the other factor.
const LOCAL_LOW: u64 = 0xff51_afd7_ed55_8ccd;
const LOCAL_HIGH: u64 = 0xffc4_ceb9_fe1a_85eb;

/// The 128-bit product of `a` and `b`, its halves XORed: one multiplication mixes every bit of both.
fn fold_multiply(a: u64, b: u64) -> u64 {
    let product = u128::from(a) * u128::from(b);
    (product as u64) ^ ((product >> 64) as u64)
}

/// The local hash of a token of at most 16 bytes, from its first eight bytes (`low`) and the next eight
/// (`high`), each little-endian with zeros past the token's end.
fn local_short(low: u64, high: u64, len: usize) -> u64 {
    fold_multiply(low ^ LOCAL_LOW, high ^ LOCAL_HIGH ^ len as u64)
}

/// Bytes `at..at + 8` of `bytes` as a little-endian word (the caller keeps them in bounds).
pub(crate) fn word_at(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(word)
}

/// `LOW_BYTES[k]` keeps the low `k` bytes of a word.
const LOW_BYTES: [u64; 9] = {
    let mut masks = [u64::MAX; 9];
    let mut k = 0;
    while k < 8 {
        masks[k] = (1 << (8 * k)) - 1;
        k += 1;
    }
    masks
};

/// Local hash of a token longer than 16 bytes: 16 bytes at a time, the last block zero-padded.
#[cold]
fn local_long(token: &[u8]) -> u64 {
    token.chunks(16).fold(token.len() as u64, |h, block| {
        let mut padded = [0u8; 16];
        padded[..block.len()].copy_from_slice(block);
        fold_multiply(word_at(&padded, 0) ^ LOCAL_LOW ^ h, word_at(&padded, 8) ^ LOCAL_HIGH)
    })
}

/// Local hash of one token. [`ngram_hashes`] gives the same values reading the tokens in place, where a token of
/// up to 16 bytes (most words) takes one multiplication and no branch on its length.
pub fn local_token_hash(token: &[u8]) -> u64 {
    if token.len() > 16 {
        return local_long(token);
    }
    let mut padded = [0u8; 16];
    padded[..token.len()].copy_from_slice(token);
    local_short(word_at(&padded, 0), word_at(&padded, 8), token.len())
}

/// Local hashes of every token of `tokens`, read in place: [`Tokens`] keeps 16 bytes after its text, so that
/// the 16 bytes from a token's start are always there to read and mask.
fn local_token_hashes(tokens: &Tokens, out: &mut Vec<u64>) {
    let buf = tokens.padded();
    out.extend(tokens.spans().iter().map(|&[start, end]| {
        let (start, len) = (start as usize, (end - start) as usize);
        if len > 16 {
            return local_long(&buf[start..start + len]);
        }
        // One load of the 16 bytes and one look-up of both masks.
        let mut sixteen = [0u8; 16];
        sixteen.copy_from_slice(&buf[start..start + 16]);
        let bytes = u128::from_le_bytes(sixteen);
        let (low, high) = TOKEN_MASKS[len];
        local_short(bytes as u64 & low, (bytes >> 64) as u64 & high, len)
    }));
}

/// `TOKEN_MASKS[len]` keeps the first `len` bytes (at most 16) of two little-endian words: the masks of the
/// first eight bytes and of the next eight.
const TOKEN_MASKS: [(u64, u64); 17] = {
    let mut masks = [(0, 0); 17];
    let mut len = 0;
    while len <= 16 {
        masks[len] = if len <= 8 {
            (LOW_BYTES[len], 0)
        } else {
            (u64::MAX, LOW_BYTES[len - 8])
        };
        len += 1;
    }
    masks
};

/// The longest n-grams whose local hashes roll cyclically. The cyclic hash is linear over GF(2): rotating a 64-bit
/// word is multiplying by `x` in GF(2)[x]/(x^64 + 1) = GF(2)[x]/((x + 1)^64), so two distinct n-grams collide with
/// a probability up to 2^-(65 - n) (token hashes taken as random: the difference of the two windows is a
/// polynomial of degree below `n`, divisible by at most `(x + 1)^(n-1)`). That is 2^-49 at 16, where a collision
/// only costs a token comparison or, rarely, one n-gram less in a row's distinct count; at 64, a window of one
/// repeated token hashes to its bits' parity. The polynomial (mod 2^64) has no such weakness: for that window its
/// collision probability is 2^-58 (`sum(BASE^k)` for `k < 64` is divisible by 2^6 only, `BASE` being 1 mod 4).
pub const CYCLIC_MAX_N: usize = 16;

/// Odd factor of the finaliser of the local polynomial (n-grams longer than [`CYCLIC_MAX_N`]).
const LOCAL_MIX: u64 = 0x9fb2_1c65_1e98_df25;

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

impl TokenHash {
    /// Hash of the n-gram whose token hashes (of this kind) are `window`.
    pub fn ngram_hash(self, window: &[u64]) -> u64 {
        match self {
            Self::Stable => mix(polynomial(window)),
            Self::Local if window.len() <= CYCLIC_MAX_N => window.iter().fold(0u64, |acc, &t| acc.rotate_left(1) ^ t),
            Self::Local => fold_multiply(polynomial(window), LOCAL_MIX),
        }
    }
}

/// Stable hash of the n-gram whose stable token hashes are `window`.
pub fn ngram_hash(window: &[u64]) -> u64 {
    TokenHash::Stable.ngram_hash(window)
}

/// Fills `out` with the hash of every n-gram of `tokens` over the `hash` of its tokens, in text order
/// (`tokens.len() - n + 1` of them, none when there are fewer than `n` tokens, or when `n` is 0). `token_hashes` is
/// scratch space.
pub fn ngram_hashes(tokens: &Tokens, n: usize, hash: TokenHash, token_hashes: &mut Vec<u64>, out: &mut Vec<u64>) {
    out.clear();
    token_hashes.clear();
    if n == 0 || tokens.len() < n {
        return;
    }
    match hash {
        TokenHash::Stable => {
            token_hashes.extend(tokens.bytes().map(|token| xxh3_64_with_seed(token, SEED)));
            roll_polynomial(token_hashes, n, mix, out);
        }
        TokenHash::Local => {
            local_token_hashes(tokens, token_hashes);
            if n <= CYCLIC_MAX_N {
                roll_cyclic(token_hashes, n, out);
            } else {
                roll_polynomial(token_hashes, n, |p| fold_multiply(p, LOCAL_MIX), out);
            }
        }
    }
}

/// `sum(window[k] * BASE^(n-1-k))` (mod 2^64), `n` the window's length.
fn polynomial(window: &[u64]) -> u64 {
    window
        .iter()
        .fold(0u64, |acc, &t| acc.wrapping_mul(BASE).wrapping_add(t))
}

/// Appends `finish` of the polynomial of every window of `n` of `token_hashes` (at least `n` of them): the
/// polynomial rolls, shifting and adding the newest token less the oldest's term (`BASE^n` times its hash, taken
/// apart from the shift so that one multiplication and one addition are all that each window waits on).
fn roll_polynomial(token_hashes: &[u64], n: usize, finish: impl Fn(u64) -> u64, out: &mut Vec<u64>) {
    let drop = (0..n).fold(1u64, |p, _| p.wrapping_mul(BASE)); // BASE^n
    let mut acc = polynomial(&token_hashes[..n]);
    let (head, rest) = windows_out(token_hashes, n, out);
    *head = finish(acc);
    for ((slot, &new), &old) in rest.iter_mut().zip(&token_hashes[n..]).zip(token_hashes) {
        acc = acc
            .wrapping_mul(BASE)
            .wrapping_add(new.wrapping_sub(old.wrapping_mul(drop)));
        *slot = finish(acc);
    }
}

/// Appends the local hash of every window of `n` of `token_hashes` (at least `n`, at most [`CYCLIC_MAX_N`]): the last
/// window's hash rotated by one, the oldest token's term (its hash rotated by `n`, where the rotation brought it)
/// XORed out and the newest token's hash XORed in.
fn roll_cyclic(token_hashes: &[u64], n: usize, out: &mut Vec<u64>) {
    let mut acc = TokenHash::Local.ngram_hash(&token_hashes[..n]);
    let (head, rest) = windows_out(token_hashes, n, out);
    *head = acc;
    let turn = n as u32;
    for ((slot, &new), &old) in rest.iter_mut().zip(&token_hashes[n..]).zip(token_hashes) {
        acc = acc.rotate_left(1) ^ old.rotate_left(turn) ^ new;
        *slot = acc;
    }
}

/// Room at the end of `out` for the hashes of the windows of `n` of `token_hashes`, written in place rather than
/// pushed: the first window's slot, and the others'.
fn windows_out<'a>(token_hashes: &[u64], n: usize, out: &'a mut Vec<u64>) -> (&'a mut u64, &'a mut [u64]) {
    let first = out.len();
    out.resize(first + token_hashes.len() - n + 1, 0);
    let (head, rest) = out[first..].split_at_mut(1);
    (&mut head[0], rest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text::Tokenizer;

    fn hashes(text: &str, n: usize) -> Vec<u64> {
        let mut tokens = Tokens::default();
        Tokenizer::Words.tokenize_into(text, &mut tokens);
        let (mut scratch, mut out) = (Vec::new(), Vec::new());
        ngram_hashes(&tokens, n, TokenHash::Stable, &mut scratch, &mut out);
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
    fn local_hashes_in_place_equal_the_direct_ones() {
        // Tokens of every length class, at the end of the text too (where the 16 bytes read run into the padding).
        let text = "a bb ccccccc dddddddd eeeeeeeee ffffffffffffffff ggggggggggggggggg x\u{e9}\u{e9} zz";
        let mut tokens = Tokens::default();
        Tokenizer::Whitespace.tokenize_into(text, &mut tokens);
        let (mut scratch, mut out) = (Vec::new(), Vec::new());
        ngram_hashes(&tokens, 1, TokenHash::Local, &mut scratch, &mut out);
        let direct: Vec<u64> = tokens
            .bytes()
            .map(|t| TokenHash::Local.ngram_hash(&[local_token_hash(t)]))
            .collect();
        assert_eq!(out, direct);
        let distinct: std::collections::HashSet<u64> = out.iter().copied().collect();
        assert_eq!(distinct.len(), tokens.len());
    }

    #[test]
    fn local_hashes_roll_either_way_and_tell_orders_and_repeats_apart() {
        let text = (0..200).map(|i| format!("w{}", i % 97)).collect::<Vec<_>>().join(" ");
        let mut tokens = Tokens::default();
        Tokenizer::Words.tokenize_into(&text, &mut tokens);
        let hashes: Vec<u64> = tokens.bytes().map(local_token_hash).collect();
        let (mut scratch, mut out) = (Vec::new(), Vec::new());
        for n in [2, 13, CYCLIC_MAX_N, CYCLIC_MAX_N + 1, MAX_N - 1, MAX_N] {
            ngram_hashes(&tokens, n, TokenHash::Local, &mut scratch, &mut out);
            let direct: Vec<u64> = hashes.windows(n).map(|w| TokenHash::Local.ngram_hash(w)).collect();
            assert_eq!(out, direct, "n = {n}");
            // Windows of 97 distinct tokens' cycle: as many distinct hashes as distinct windows.
            let distinct: std::collections::HashSet<u64> = out.iter().copied().collect();
            assert_eq!(distinct.len(), 97.min(out.len()), "n = {n}");
        }
        // The same tokens in another order are another n-gram.
        let (ab, ba) = (local_token_hash(b"ab"), local_token_hash(b"ba"));
        assert_ne!(
            TokenHash::Local.ngram_hash(&[ab, ba]),
            TokenHash::Local.ngram_hash(&[ba, ab])
        );
        // Repeats, where a linear hash is weakest (the cyclic one kept to 64 tokens hashed every window of one
        // repeated token to its parity): one token n times, for 500 tokens, and two or four tokens in turn.
        let words: Vec<u64> = (0..500).map(|i| local_token_hash(format!("t{i}").as_bytes())).collect();
        for n in [7, 8, 13, CYCLIC_MAX_N, CYCLIC_MAX_N + 1, 32, MAX_N] {
            let mut seen = std::collections::HashSet::new();
            for &w in &words {
                assert!(seen.insert(TokenHash::Local.ngram_hash(&vec![w; n])), "n = {n}");
            }
            for period in [2, 4] {
                for shift in 0..period {
                    let window: Vec<u64> = (0..n).map(|k| words[(k + shift) % period]).collect();
                    assert!(
                        seen.insert(TokenHash::Local.ngram_hash(&window)),
                        "n = {n}, {period}, {shift}"
                    );
                }
            }
        }
    }

    #[test]
    fn local_hashes_tell_lengths_and_trailing_bytes_apart() {
        let tokens: [&[u8]; 8] = [
            b"",
            b"a",
            b"a\0",
            b"ab",
            b"abcdefgh",
            b"abcdefgh\0",
            b"abcdefghijklmnop",
            b"abcdefghijklmnopq",
        ];
        let hashes: std::collections::HashSet<u64> = tokens.iter().map(|t| local_token_hash(t)).collect();
        assert_eq!(hashes.len(), tokens.len());
    }

    #[test]
    fn too_short_has_no_ngrams() {
        assert!(hashes("aa bb", 3).is_empty());
        assert_eq!(hashes("aa bb cc", 3).len(), 1);
    }

    #[test]
    fn no_ngrams_of_size_zero() {
        assert!(hashes("aa bb cc", 0).is_empty());
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
