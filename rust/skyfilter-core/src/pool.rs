//! The one worker pool of the core: a rayon pool per thread count asked for, built on first use and kept for
//! the life of the process (a run asks for one count; building a pool per call cost a thread start per worker
//! and kernel call).
//!
//! Fork safety: a process forked after its pools were built (DataLoader workers, multiprocessing's `fork`
//! context) inherits the pools but not their threads, so work handed to them would never run. The pools record
//! the process that built them; in any other process every kernel runs on the calling thread, as the
//! `tokenizers` library does after a fork. Comparing process ids needs no handler registered with
//! `pthread_atfork` and holds for children of children too.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use rayon::{ThreadPool, ThreadPoolBuilder};

use crate::Error;

struct Pools {
    /// The process id of the process that built the pools.
    owner: u32,
    by_threads: Mutex<HashMap<usize, Arc<ThreadPool>>>,
}

static POOLS: OnceLock<Pools> = OnceLock::new();

/// The pool of `threads` workers (0: rayon's default, all cores or `RAYON_NUM_THREADS`; more than the cores
/// this process may use: as many as the cores), or `None` when the work is to run on the calling thread:
/// `threads == 1`, or a process forked after the pools were built.
pub(crate) fn pool(threads: usize) -> Result<Option<Arc<ThreadPool>>, Error> {
    let threads = match std::thread::available_parallelism() {
        Ok(cores) if threads > cores.get() => cores.get(),
        _ => threads,
    };
    if threads == 1 || is_forked() {
        return Ok(None);
    }
    let pools = POOLS.get_or_init(|| Pools {
        owner: std::process::id(),
        by_threads: Mutex::default(),
    });
    let mut by_threads = pools.by_threads.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(pool) = by_threads.get(&threads) {
        return Ok(Some(Arc::clone(pool)));
    }
    let pool = ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("skyfilter-{i}"))
        .build()
        .map_err(|e| Error::ThreadPool(e.to_string()))?;
    let pool = Arc::new(pool);
    by_threads.insert(threads, Arc::clone(&pool));
    Ok(Some(pool))
}

/// Whether this process was forked from the one that built the pools (whose threads it does not have).
fn is_forked() -> bool {
    POOLS.get().is_some_and(|p| p.owner != std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_pool_per_thread_count() {
        assert!(pool(1).unwrap().is_none());
        let cores = std::thread::available_parallelism().unwrap().get();
        let a = pool(cores).unwrap();
        let b = pool(cores).unwrap();
        assert_eq!(
            a.as_ref().map(|p| p.current_num_threads()),
            b.as_ref().map(|p| p.current_num_threads())
        );
        if let (Some(a), Some(b)) = (a, b) {
            assert!(Arc::ptr_eq(&a, &b), "the pool is built once");
            assert_eq!(a.current_num_threads(), cores);
        }
        let many = pool(cores + 5).unwrap();
        assert_eq!(
            many.map_or(1, |p| p.current_num_threads()),
            cores,
            "no more threads than cores"
        );
    }
}
