//! N-gram hashing.
//!
//! A token hashes by one of two [`TokenHash`] functions, and its n-grams by a rolling function of the token hashes:
//!
//! * `Stable`: `xxh3_64(token bytes, SEED)`, the same in every process, machine and release, for hashes that are
//!   stored or compared between processes (MinHash signatures). An n-gram hashes to the polynomial
//!   `sum(t[k] * BASE^(n-1-k))` (mod 2^64) of its token hashes, finalised by murmur3's 64-bit mixer; the polynomial
//!   rolls, so each further window costs two multiplications and the mixer.
//! * `Local`: cheaper and free to change between releases, for hashes that never leave the process (the
//!   contamination index and the rows matched against it). A token of up to 16 bytes hashes by one 64-bit
//!   multiplication of its two words (see [`local_multiply`]). An n-gram of up to [`CYCLIC_MAX_N`] tokens hashes to
//!   the XOR of its token hashes, each rotated left by its distance from the window's end
//!   (`t[k].rotate_left(n-1-k)`, a cyclic polynomial, as buzhash): it rolls by a rotation and two XORs, without a
//!   multiplication or a finaliser (the token hashes are already mixed). Longer n-grams take the polynomial above,
//!   finished by one such multiplication (see [`CYCLIC_MAX_N`] for why).
//!
//! Hashes only find candidates: every hit is confirmed by comparing tokens.

use xxhash_rust::xxh3::xxh3_64_with_seed;

use crate::text::{Span, Tokens};

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

/// Factors of [`local_token_hash`] whose top byte is `0xff`, a byte UTF-8 never holds: XORed with at most eight
/// bytes of a token (zeros past its end) they never give 0, which would absorb the other factor.
const LOCAL_LOW: u64 = 0xff51_afd7_ed55_8ccd;
const LOCAL_HIGH: u64 = 0xffc4_ceb9_fe1a_85eb;

/// `a` times `b` made odd (shifted left by one, its lowest bit set), the product's high half XORed into its low
/// half: one multiplication, where the 128-bit product (its halves folded) takes four in 64-bit lanes, the cost of
/// the vector token hashes. For each `b` it is a bijection of `a` (an odd factor is invertible modulo 2^64, and the
/// fold is invertible), so two tokens whose second words agree never collide; `b` loses its top bit, that of a
/// token's sixteenth byte, which two valid UTF-8 texts the same before it cannot differ in alone (an ASCII byte
/// there ends a character, a continuation byte does not). The product's top bits depend on every bit of both
/// factors; the fold brings them down to the low bits, which hash tables index by.
fn local_multiply(a: u64, b: u64) -> u64 {
    let p = a.wrapping_mul(b << 1 | 1);
    p ^ (p >> 32)
}

/// The local hash of a token of at most 16 bytes, from its first eight bytes (`low`) and the next eight
/// (`high`), each little-endian with zeros past the token's end.
fn local_short(low: u64, high: u64, len: usize) -> u64 {
    local_multiply(low ^ LOCAL_LOW, high ^ LOCAL_HIGH ^ len as u64)
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
        local_multiply(word_at(&padded, 0) ^ LOCAL_LOW ^ h, word_at(&padded, 8) ^ LOCAL_HIGH)
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
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") && std::arch::is_x86_feature_detected!("avx512dq") {
        // SAFETY: the processor has AVX-512 F and DQ, checked just above (the standard library caches the answer).
        return unsafe { local_hashes_avx512(tokens, out) };
    }
    local_hashes(tokens.padded(), tokens.spans(), out);
}

/// [`local_token_hashes`] of the tokens at `spans` in `buf`, one at a time.
fn local_hashes(buf: &[u8], spans: &[Span], out: &mut Vec<u64>) {
    out.extend(spans.iter().map(|&[start, end]| {
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

/// [`local_token_hashes`] eight tokens at a time: their spans in one load, their two words loaded, masked to
/// their lengths by variable shifts and hashed as [`local_short`] does, in the lanes. Tokens longer than 16 bytes
/// (few) are hashed one by one afterwards, and the last seven tokens one at a time. [`local_multiply`] is one
/// 64-bit multiplication in a lane (AVX-512 DQ).
///
/// # Safety
/// The processor must have AVX-512 F and DQ.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512dq")]
unsafe fn local_hashes_avx512(tokens: &Tokens, out: &mut Vec<u64>) {
    use std::arch::x86_64::{
        __m128i, _mm512_and_si512, _mm512_castsi128_si512, _mm512_cmpgt_epu64_mask, _mm512_inserti32x4,
        _mm512_loadu_si512, _mm512_max_epu64, _mm512_min_epu64, _mm512_mullo_epi64, _mm512_or_si512,
        _mm512_permutex2var_epi64, _mm512_set1_epi64, _mm512_slli_epi64, _mm512_srli_epi64, _mm512_srlv_epi64,
        _mm512_storeu_si512, _mm512_sub_epi64, _mm512_xor_si512, _mm_loadu_si128,
    };
    let (buf, spans) = (tokens.padded(), tokens.spans());
    let first = out.len();
    let lanes = spans.len() / 8 * 8;
    out.reserve(spans.len());
    let to = out.spare_capacity_mut().as_mut_ptr().cast::<u64>();
    let set = |v: u64| _mm512_set1_epi64(v as i64);
    let (eight, sixty_four, ones, low32) = (set(8), set(64), set(u64::MAX), set(u64::from(u32::MAX)));
    // Ones in the low `bytes` bytes (0 to 8) of each lane: a shift by 64 or more gives 0.
    let low_bytes = |bytes| _mm512_srlv_epi64(ones, _mm512_sub_epi64(sixty_four, _mm512_slli_epi64::<3>(bytes)));
    // The even and the odd words of two registers of four tokens' sixteen bytes: their first and second words.
    // SAFETY: the loads read the 64 bytes of each array.
    let (lows, highs) = unsafe {
        (
            _mm512_loadu_si512([0u64, 2, 4, 6, 8, 10, 12, 14].as_ptr().cast()),
            _mm512_loadu_si512([1u64, 3, 5, 7, 9, 11, 13, 15].as_ptr().cast()),
        )
    };
    for at in (0..lanes).step_by(8) {
        // SAFETY: spans `at..at + 8` are in bounds (`at + 8 <= lanes`), 64 bytes; the loads read 16 bytes from
        // each token's start, which the padding after the text keeps in `buf`.
        let (low, high, len) = unsafe {
            let span = _mm512_loadu_si512(spans.as_ptr().add(at).cast());
            let start = _mm512_and_si512(span, low32);
            let len = _mm512_sub_epi64(_mm512_srli_epi64::<32>(span), start);
            // Each token's sixteen bytes in one load, four to a register (two gathers of the words were slower).
            #[allow(clippy::cast_ptr_alignment)] // unaligned loads
            let sixteen = |k: usize| _mm_loadu_si128(buf.as_ptr().add(spans[at + k][0] as usize).cast::<__m128i>());
            let four = |k: usize| {
                let v = _mm512_castsi128_si512(sixteen(k));
                let v = _mm512_inserti32x4::<1>(v, sixteen(k + 1));
                let v = _mm512_inserti32x4::<2>(v, sixteen(k + 2));
                _mm512_inserti32x4::<3>(v, sixteen(k + 3))
            };
            let (first, last) = (four(0), four(4));
            let low = _mm512_permutex2var_epi64(first, lows, last);
            let high = _mm512_permutex2var_epi64(first, highs, last);
            (low, high, len)
        };
        let low = _mm512_and_si512(low, low_bytes(_mm512_min_epu64(len, eight)));
        let past_eight = _mm512_sub_epi64(_mm512_max_epu64(len, eight), eight);
        let high = _mm512_and_si512(high, low_bytes(_mm512_min_epu64(past_eight, eight)));
        let x = _mm512_xor_si512(low, set(LOCAL_LOW));
        let y = _mm512_xor_si512(_mm512_xor_si512(high, set(LOCAL_HIGH)), len);
        // `local_multiply(x, y)`.
        let product = _mm512_mullo_epi64(x, _mm512_or_si512(_mm512_slli_epi64::<1>(y), set(1)));
        let h = _mm512_xor_si512(product, _mm512_srli_epi64::<32>(product));
        // SAFETY: `reserve` left room for every token's hash; these are tokens `at..at + 8`.
        unsafe { _mm512_storeu_si512(to.add(at).cast(), h) };
        let mut long = _mm512_cmpgt_epu64_mask(len, set(16));
        while long != 0 {
            let t = at + long.trailing_zeros() as usize;
            long &= long - 1;
            let [start, end] = spans[t];
            // SAFETY: as above, token `t`'s slot.
            unsafe { *to.add(t) = local_long(&buf[start as usize..end as usize]) };
        }
    }
    // SAFETY: the first `lanes` hashes were written above.
    unsafe { out.set_len(first + lanes) };
    local_hashes(buf, &spans[lanes..], out);
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
            Self::Local => local_multiply(polynomial(window), LOCAL_MIX),
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
                roll_polynomial(token_hashes, n, |p| local_multiply(p, LOCAL_MIX), out);
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
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: the processor has AVX-512 F, checked just above (the standard library caches the answer).
        return unsafe { cyclic_avx512(token_hashes, n, out) };
    }
    roll_cyclic_portable(token_hashes, n, out);
}

/// [`roll_cyclic`] one window after another.
fn roll_cyclic_portable(token_hashes: &[u64], n: usize, out: &mut Vec<u64>) {
    let mut acc = TokenHash::Local.ngram_hash(&token_hashes[..n]);
    let (head, rest) = windows_out(token_hashes, n, out);
    *head = acc;
    let turn = n as u32;
    for ((slot, &new), &old) in rest.iter_mut().zip(&token_hashes[n..]).zip(token_hashes) {
        acc = acc.rotate_left(1) ^ old.rotate_left(turn) ^ new;
        *slot = acc;
    }
}

/// [`roll_cyclic`] eight windows at a time, each hashed whole rather than rolled (rolling waits on the last
/// window's hash: two operations a window, one after the other): the hashes of tokens `k..k + 8` loaded for each
/// `k` of the window, and the sum rotated by one before each, in the lanes. The last windows take masked loads.
///
/// # Safety
/// The processor must have AVX-512 F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn cyclic_avx512(token_hashes: &[u64], n: usize, out: &mut Vec<u64>) {
    use std::arch::x86_64::{
        _mm512_mask_storeu_epi64, _mm512_maskz_loadu_epi64, _mm512_rol_epi64, _mm512_setzero_si512, _mm512_xor_si512,
    };
    let windows = token_hashes.len() - n + 1;
    let first = out.len();
    out.reserve(windows);
    let to = out.spare_capacity_mut().as_mut_ptr().cast::<i64>();
    let from = token_hashes.as_ptr().cast::<i64>();
    for at in (0..windows).step_by(8) {
        // Lanes of the windows `at..at + 8` that exist.
        let lanes = if windows - at >= 8 {
            0xff
        } else {
            (1u8 << (windows - at)) - 1
        };
        let mut acc = _mm512_setzero_si512();
        for k in 0..n {
            // SAFETY: lane `j` reads token `at + j + k`, at most `windows - 1 + n - 1`, the last token.
            let tokens = unsafe { _mm512_maskz_loadu_epi64(lanes, from.add(at + k)) };
            acc = _mm512_xor_si512(_mm512_rol_epi64::<1>(acc), tokens);
        }
        // SAFETY: `reserve` left room for every window's hash; lane `j` is window `at + j`.
        unsafe { _mm512_mask_storeu_epi64(to.add(at), lanes, acc) };
    }
    // SAFETY: the `windows` hashes were written above.
    unsafe { out.set_len(first + windows) };
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
        Tokenizer::Words.tokenize_into(text, &mut tokens).unwrap();
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
        Tokenizer::Words
            .tokenize_into("aa bb cc dd ee ff gg hh ii jj", &mut tokens)
            .unwrap();
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
        // The tokens' hashes as n-grams of one, read in place, against `local_token_hash` of each token.
        let in_place_and_direct = |text: &str| {
            let mut tokens = Tokens::default();
            Tokenizer::Whitespace.tokenize_into(text, &mut tokens).unwrap();
            let (mut scratch, mut out) = (Vec::new(), Vec::new());
            ngram_hashes(&tokens, 1, TokenHash::Local, &mut scratch, &mut out);
            let direct: Vec<u64> = tokens
                .bytes()
                .map(|t| TokenHash::Local.ngram_hash(&[local_token_hash(t)]))
                .collect();
            (out, direct)
        };
        // Tokens of every length class, at the end of the text too (where the 16 bytes read run into the padding).
        let (out, direct) =
            in_place_and_direct("a bb ccccccc dddddddd eeeeeeeee ffffffffffffffff ggggggggggggggggg x\u{e9}\u{e9} zz");
        assert_eq!(out, direct);
        let distinct: std::collections::HashSet<u64> = out.iter().copied().collect();
        assert_eq!(distinct.len(), out.len());
        // Hundreds of tokens (eight to a vector where the processor has AVX-512), of every length from 1 to 40
        // bytes in every position of a vector, of every printable ASCII byte, and some not ASCII.
        let text: Vec<String> = (0..700usize)
            .map(|i| {
                (0..=i * 7 % 40)
                    .map(|k| char::from_u32(33 + ((i * 31 + k * 17) % 94) as u32).unwrap_or('a'))
                    .collect()
            })
            .collect();
        let (out, direct) = in_place_and_direct(&text.join(" \u{e9}"));
        assert_eq!(out, direct);
    }

    #[test]
    fn cyclic_hashes_are_the_same_in_lanes_and_rolled() {
        // Every n up to CYCLIC_MAX_N over 1 to 40 tokens: whole blocks of eight windows, and the last windows.
        let token_hashes: Vec<u64> = (0..40u64).map(|i| local_token_hash(&i.to_le_bytes())).collect();
        for len in 1..=token_hashes.len() {
            for n in 1..=CYCLIC_MAX_N.min(len) {
                let tokens = &token_hashes[..len];
                let direct: Vec<u64> = tokens.windows(n).map(|w| TokenHash::Local.ngram_hash(w)).collect();
                let mut out = vec![1, 2];
                roll_cyclic_portable(tokens, n, &mut out);
                assert_eq!(out[2..], direct, "rolled, {len} tokens, n = {n}");
                out.truncate(2);
                roll_cyclic(tokens, n, &mut out);
                assert_eq!(out[..2], [1, 2]);
                assert_eq!(out[2..], direct, "{len} tokens, n = {n}");
            }
        }
    }

    #[test]
    fn local_hashes_roll_either_way_and_tell_orders_and_repeats_apart() {
        let text = (0..200).map(|i| format!("w{}", i % 97)).collect::<Vec<_>>().join(" ");
        let mut tokens = Tokens::default();
        Tokenizer::Words.tokenize_into(&text, &mut tokens).unwrap();
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
    fn local_hashes_of_distinct_tokens_are_distinct_and_spread() {
        // Every token of one to three letters or digits, and longer ones of every length up to 40 bytes.
        let alphabet: Vec<u8> = (b'a'..=b'z').chain(b'0'..=b'9').collect();
        let mut tokens: Vec<Vec<u8>> = alphabet.iter().map(|&a| vec![a]).collect();
        for len in 2..=3 {
            let shorter: Vec<Vec<u8>> = tokens.iter().filter(|t| t.len() == len - 1).cloned().collect();
            for t in &shorter {
                tokens.extend(alphabet.iter().map(|&a| [t.as_slice(), &[a]].concat()));
            }
        }
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        for i in 0..50_000 {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let len = 4 + i % 37;
            tokens.push(
                (0..len)
                    .map(|k| alphabet[(state >> (k % 58)) as usize % alphabet.len()])
                    .collect(),
            );
        }
        tokens.sort();
        tokens.dedup();
        let hashes: Vec<u64> = tokens.iter().map(|t| local_token_hash(t)).collect();
        let distinct: std::collections::HashSet<u64> = hashes.iter().copied().collect();
        assert_eq!(distinct.len(), tokens.len());
        // Their low and their top 16 bits (what hash tables and the filter index by) spread as random ones do:
        // about 1.5 a bucket, none near 20.
        for bits in [|h: u64| h & 0xffff, |h: u64| h >> 48] {
            let mut buckets = vec![0u32; 1 << 16];
            for &h in &hashes {
                buckets[bits(h) as usize] += 1;
            }
            let most = buckets.iter().max().copied().unwrap_or(0);
            assert!(most < 14, "{most} hashes in one bucket");
        }
    }

    #[test]
    fn local_hashes_tell_first_words_apart_whatever_the_second() {
        // The second word of these 11-byte tokens (a three-byte character at byte 8) XORed with its factor and
        // the length ends in a zero byte: even, times it the first words' top bits would vanish from the product.
        let tokens: Vec<Vec<u8>> = (b'a'..=b'z')
            .flat_map(|a| (b'a'..=b'z').map(move |b| [b"abcdef".as_slice(), &[a, b], "\u{940}".as_bytes()].concat()))
            .collect();
        assert_eq!(
            (word_at(&[&tokens[0][8..], &[0; 5]].concat(), 0) ^ LOCAL_HIGH ^ 0xb) & 0xff,
            0
        );
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
