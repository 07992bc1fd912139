//! skyfilter-core: the pure-Rust kernels of skyfilter, with no Python in sight.
//!
//! * [`text`]: normalisation and tokenisation presets that reproduce the Python reference methods.
//! * [`ngram`]: stable xxh3 n-gram hashing.
//! * [`contam`]: the benchmark n-gram index and the parallel contamination matcher.
//! * [`dedup`]: exact row keys, MinHash signatures and LSH near-duplicate clustering.
//! * [`parquet`]: parquet row groups decoded in parallel into Arrow batches.
//! * [`select`]: score thresholds, margins, length ratios, reward-model agreement and per-group top fractions.
//! * [`views`]: rows of string arrays as string_view arrays that share the input's text.
//! * [`recycle`]: a global allocator that reuses large freed blocks (the parquet reader's batch buffers).

pub mod contam;
pub mod dedup;
mod filter;
pub mod ngram;
pub mod parquet;
mod pool;
pub mod recycle;
mod rows;
pub mod select;
pub mod shingle_sets;
pub mod text;
pub mod views;

pub use rows::{utf8, ByteRows};

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// Every error of the core.
#[derive(Debug, Clone, PartialEq)]
pub enum Error {
    /// n must be between 1 and [`ngram::MAX_N`].
    InvalidNgram(usize),
    /// Row bounds must start a slice of the texts and never decrease.
    InvalidRowBounds,
    /// The ignore mask must have one entry per benchmark n-gram.
    InvalidIgnoreMask { expected: usize, got: usize },
    /// The benchmarks do not fit the index's 32-bit offsets and row numbers (over 4 GiB of tokens, or 2^32 rows).
    BenchmarkTooLarge,
    /// The worker pool could not start.
    ThreadPool(String),
    /// MinHash / LSH parameters or signatures that do not fit together.
    InvalidMinHash(String),
    /// Selection rules and columns that do not fit together.
    InvalidSelect(String),
    /// A parquet file that cannot be read.
    Parquet(String),
    /// A file that cannot be opened: its path, the kind of failure and the OS error number when there is one.
    Io {
        path: PathBuf,
        kind: io::ErrorKind,
        errno: Option<i32>,
        message: String,
    },
    /// More text than one utf8 array holds (2 GiB).
    TextTooLarge(usize),
    /// Character classes that do not describe Unicode code points.
    InvalidCharClasses(String),
    /// A text that is not valid UTF-8: its 0-based index among the texts passed in.
    InvalidUtf8 { text: usize },
    /// A text longer than the tokenizer's 32-bit positions reach once normalised (4 GiB): its index and bytes.
    TextTooLong { text: usize, bytes: usize },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidNgram(n) => write!(f, "n-gram size must be between 1 and {}, got {n}", ngram::MAX_N),
            Error::InvalidRowBounds => write!(f, "row bounds must be non-decreasing offsets into the texts"),
            Error::InvalidIgnoreMask { expected, got } => {
                write!(
                    f,
                    "ignore mask must have one entry per benchmark n-gram ({expected}), got {got}"
                )
            }
            Error::BenchmarkTooLarge => write!(
                f,
                "benchmark too large for the index (over 4 GiB of tokens, or 2^32 rows)"
            ),
            Error::ThreadPool(e) => write!(f, "could not start worker threads: {e}"),
            Error::InvalidMinHash(e) | Error::InvalidSelect(e) | Error::Parquet(e) | Error::InvalidCharClasses(e) => {
                write!(f, "{e}")
            }
            Error::Io { path, message, .. } => write!(f, "{}: {message}", path.display()),
            Error::TextTooLarge(bytes) => write!(f, "{bytes} bytes of text, more than one utf8 array holds"),
            Error::InvalidUtf8 { text } => write!(f, "text {text} is not valid UTF-8"),
            Error::TextTooLong { text, bytes } => write!(f, "text {text} is too long: {}", too_long(*bytes)),
        }
    }
}

impl std::error::Error for Error {}

/// Why a text of `bytes` bytes is refused: [`Error::TextTooLong`].
pub fn too_long(bytes: usize) -> String {
    format!("{bytes} bytes, over the 4 GiB a text may have once lower-cased")
}

impl Error {
    /// `err` from an operation on `path`; the message is the OS's description without std's "(os error N)".
    pub fn io(path: &Path, err: &io::Error) -> Self {
        let message = err.to_string();
        let message = match (message.rfind(" (os error "), err.raw_os_error()) {
            (Some(at), Some(_)) => message[..at].to_owned(),
            _ => message,
        };
        Error::Io {
            path: path.to_path_buf(),
            kind: err.kind(),
            errno: err.raw_os_error(),
            message,
        }
    }
}
