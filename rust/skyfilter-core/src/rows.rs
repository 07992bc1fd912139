//! Rows of texts and the one way rows are processed in parallel.

use std::ops::Range;

use rayon::prelude::*;

use crate::pool::pool;
use crate::Error;

/// `bytes` as text when they are UTF-8: the one check of every kernel, with SIMD (`simdutf8`, 16 to 32 bytes an
/// instruction through text beyond ASCII too, where the standard library's check takes each such sequence alone).
pub fn utf8(bytes: &[u8]) -> Option<&str> {
    simdutf8::basic::from_utf8(bytes).ok()
}

/// A column of byte strings, read in place: an Arrow string array, or a slice of rows (`None` is null).
pub trait ByteRows: Sync {
    fn len(&self) -> usize;
    fn row(&self, r: usize) -> Option<&[u8]>;

    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl ByteRows for [Option<&[u8]>] {
    fn len(&self) -> usize {
        <[_]>::len(self)
    }

    fn row(&self, r: usize) -> Option<&[u8]> {
        self[r]
    }
}

impl ByteRows for [Option<&str>] {
    fn len(&self) -> usize {
        <[_]>::len(self)
    }

    fn row(&self, r: usize) -> Option<&[u8]> {
        self[r].map(str::as_bytes)
    }
}

/// Row `r` owns `texts[bounds[r]..bounds[r + 1]]`: the bounds must be non-decreasing offsets into the texts.
pub(crate) fn check_bounds(texts: usize, bounds: &[usize]) -> Result<(), Error> {
    if bounds.is_empty() || bounds.windows(2).any(|w| w[0] > w[1]) || bounds[bounds.len() - 1] > texts {
        return Err(Error::InvalidRowBounds);
    }
    Ok(())
}

/// `f(scratch, r)` for rows `0..n_rows`, in order; in parallel on the [`pool`] of `threads` workers (0 = rayon's
/// default) unless it runs on the calling thread (`threads == 1`, or a forked process). Results never depend
/// on the number of threads.
pub(crate) fn map_rows<T: Send, S: Default>(
    n_rows: usize,
    threads: usize,
    f: impl Fn(&mut S, usize) -> T + Sync + Send,
) -> Result<Vec<T>, Error> {
    let pool = if n_rows < 2 { None } else { pool(threads)? };
    let Some(pool) = pool else {
        let mut scratch = S::default();
        return Ok((0..n_rows).map(|r| f(&mut scratch, r)).collect());
    };
    Ok(pool.install(|| {
        (0..n_rows)
            .into_par_iter()
            .with_min_len(64)
            .map_init(S::default, f)
            .collect()
    }))
}

/// `f(range)` for contiguous ranges that cover rows `0..n_rows` in order (at least 4096 rows each but the last);
/// in parallel on the [`pool`] of `threads` workers (0 = rayon's default) unless it runs on the calling thread.
/// For kernels that carry state from row to row: callers combine the results in order, so that nothing depends
/// on the number of threads.
pub(crate) fn map_chunks<T: Send>(
    n_rows: usize,
    threads: usize,
    f: impl Fn(Range<usize>) -> T + Sync + Send,
) -> Result<Vec<T>, Error> {
    const MIN_CHUNK: usize = 4096;
    let pool = if n_rows <= MIN_CHUNK { None } else { pool(threads)? };
    let Some(pool) = pool else {
        return Ok(vec![f(0..n_rows)]);
    };
    let chunk = n_rows.div_ceil(pool.current_num_threads() * 4).max(MIN_CHUNK);
    let ranges: Vec<Range<usize>> = (0..n_rows).step_by(chunk).map(|s| s..(s + chunk).min(n_rows)).collect();
    Ok(pool.install(|| ranges.into_par_iter().map(f).collect()))
}

#[cfg(test)]
mod tests {
    use super::utf8;

    #[test]
    fn utf8_is_checked_as_the_standard_library_does_at_every_place_of_a_block() {
        // Sequences that are not UTF-8 (a surrogate, overlong forms, past U+10FFFF, a lone continuation byte, a
        // cut sequence) and ones that are, at every place of ASCII text up to past two 64-byte blocks.
        let pieces: [&[u8]; 10] = [
            b"\xed\xa0\x80",
            b"\xc0\x80",
            b"\xe0\x80\x80",
            b"\xf4\x90\x80\x80",
            b"\xf5",
            b"\x80",
            b"\xe4\xb8",
            "\u{e9}".as_bytes(),
            "\u{4e2d}".as_bytes(),
            "\u{1f600}".as_bytes(),
        ];
        for piece in pieces {
            for at in 0..140 {
                let mut bytes = vec![b'a'; at];
                bytes.extend_from_slice(piece);
                bytes.extend_from_slice(&[b'b'; 70]);
                assert_eq!(utf8(&bytes), std::str::from_utf8(&bytes).ok(), "{piece:?} at {at}");
                bytes.truncate(at + piece.len());
                assert_eq!(
                    utf8(&bytes),
                    std::str::from_utf8(&bytes).ok(),
                    "{piece:?} at the end, {at}"
                );
            }
        }
    }
}
