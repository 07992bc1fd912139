//! A global allocator that keeps a few large freed blocks for the next large allocation, while asked to.
//!
//! The parquet reader decodes each row group's text into a fresh buffer of tens of MB (arrow's byte-array
//! decoder grows a `Vec` by doubling), and the batch is dropped once the command has written it. Through the
//! system allocator every such buffer is a fresh `mmap`: the kernel faults in and zeroes each page at its first
//! write and unmaps them all at the free, which was two thirds of the `skyfilter contaminate` command's system
//! time and a fifth of its CPU (docs/benchmarks.md). [`Recycling`] keeps up to [`KEEP_BLOCKS`] freed blocks of
//! [`LARGE`] bytes or more (at most [`KEEP_BYTES`] together) and hands them to the next large allocation, pages
//! already mapped. Everything else goes to the system allocator unchanged.
//!
//! Blocks are kept only while some [`Keeping`] guard lives (a parquet reader holds one); when the last guard
//! goes, the kept blocks go back to the system, so a process that is done reading does not hold on to them.
//!
//! A large block carries its capacity in a header before the pointer handed out: a block serves any request up
//! to its capacity and grows in place up to it (`realloc`), whatever size was asked first; shrunk below half its
//! capacity, it gives the rest back. Large requests are those aligned to at most [`HEADER`] bytes (`Vec`s of
//! bytes and numbers; arrow's own buffers, aligned to 64 or 128 bytes, go to the system allocator), so the system
//! blocks under them are plain `malloc` blocks, and one that grows past its capacity is `realloc`ed (moved by
//! remapping where glibc mapped it on its own, which it does for the large ones).
//!
//! The cache is behind a spin-free lock taken with one compare-and-swap: an allocation or a free that finds it
//! taken goes to the system allocator instead, so no allocation ever waits; [`Recycling::release`] tries a
//! bounded number of times and otherwise leaves the blocks for the next release (a process forked while another
//! thread held the lock keeps its copy of them, and never hangs).
//!
//! A pointer of 4 MiB or more that this allocator handed out must be freed by it (Rust's `dealloc`), never by C's
//! `free`, and the reverse: so it is with any Rust global allocator, and nothing in the extension mixes them (arrow's
//! C data interface releases run this library's code; arrays imported from pyarrow are freed by pyarrow).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::UnsafeCell;
use std::ops::{Deref, DerefMut};
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Allocations of at least this many bytes are large: they carry a header and may be recycled.
pub const LARGE: usize = 4 << 20;
/// At most this many freed blocks are kept.
pub const KEEP_BLOCKS: usize = 4;
/// At most this many bytes of freed blocks are kept, together.
pub const KEEP_BYTES: usize = 512 << 20;
/// A kept block serves requests of at least 1/`MAX_WASTE` of its capacity: arrow's decoder starts a batch's
/// buffer at 4-8 MB and doubles it up to about 90 MB, and a request that takes a larger block grows into it.
const MAX_WASTE: usize = 16;
/// The header before a large block's pointer, holding its capacity; also the largest alignment of a large
/// request (the alignment `malloc` gives every block).
pub const HEADER: usize = 16;
/// Times [`Recycling::release`] tries the lock before leaving the blocks to the next release.
const PATIENCE: usize = 10_000;

#[derive(Clone, Copy)]
struct Block {
    /// The header's address: the system allocation.
    base: *mut u8,
    capacity: usize,
}

struct Cache {
    blocks: [Option<Block>; KEEP_BLOCKS],
    bytes: usize,
}

/// The allocator: [`System`], with a small cache of freed large blocks in front of it.
pub struct Recycling {
    /// Whether a thread holds `cache`.
    locked: AtomicBool,
    cache: UnsafeCell<Cache>,
    /// Live [`Keeping`] guards.
    keepers: AtomicUsize,
}

// SAFETY: `cache` is only reached through `Held`, which one thread at a time owns (the `locked` flag taken by a
// compare-and-swap with acquire ordering, released with release ordering); the kept blocks belong to the cache
// alone (freed by their last user, not handed out again until taken from it).
unsafe impl Sync for Recycling {}

/// The cache, held: the lock is given back when this is dropped.
struct Held<'a>(&'a Recycling);

impl Deref for Held<'_> {
    type Target = Cache;
    fn deref(&self) -> &Cache {
        // SAFETY: this thread holds the lock (see `Recycling`'s Sync).
        unsafe { &*self.0.cache.get() }
    }
}

impl DerefMut for Held<'_> {
    fn deref_mut(&mut self) -> &mut Cache {
        // SAFETY: this thread holds the lock (see `Recycling`'s Sync).
        unsafe { &mut *self.0.cache.get() }
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.0.locked.store(false, Ordering::Release);
    }
}

/// While one of these lives, [`Recycling`] keeps large freed blocks; when the last goes, it gives them back.
pub struct Keeping<'a>(&'a Recycling);

impl Drop for Keeping<'_> {
    fn drop(&mut self) {
        if self.0.keepers.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.release();
        }
    }
}

impl Default for Recycling {
    fn default() -> Self {
        Self::new()
    }
}

fn is_large(layout: Layout) -> bool {
    // Past half the address space a request goes to the system allocator (which refuses it), so that a block's
    // system size (`capacity + HEADER`) is always a valid layout.
    (LARGE..=isize::MAX as usize / 2).contains(&layout.size()) && layout.align() <= HEADER
}

/// The system layout of a large block of `capacity` bytes.
fn system_layout(capacity: usize) -> Layout {
    // SAFETY: HEADER is a power of two, and a large capacity is at most half of isize::MAX (`is_large`).
    unsafe { Layout::from_size_align_unchecked(capacity + HEADER, HEADER) }
}

/// The pointer handed out for the block at `base`, its capacity written in the header.
unsafe fn hand_out(base: *mut u8, capacity: usize) -> *mut u8 {
    // SAFETY: `base` starts a system allocation of `capacity + HEADER` bytes aligned to HEADER (>= 8).
    unsafe {
        #[allow(clippy::cast_ptr_alignment)] // the block starts aligned to HEADER (16)
        base.cast::<usize>().write(capacity);
        base.add(HEADER)
    }
}

/// The block under a pointer that [`hand_out`] returned.
unsafe fn block_of(ptr: *mut u8) -> Block {
    // SAFETY: `ptr` was handed out HEADER bytes after its block's start, where the capacity is.
    unsafe {
        let base = ptr.sub(HEADER);
        Block {
            base,
            #[allow(clippy::cast_ptr_alignment)] // the block starts aligned to HEADER (16)
            capacity: base.cast::<usize>().read(),
        }
    }
}

unsafe fn give_back(block: Block) {
    // SAFETY: a block is a system allocation of this layout (the caller no longer holds it).
    unsafe { System.dealloc(block.base, system_layout(block.capacity)) };
}

/// A large block resized by the system allocator to hold `size` bytes (its header moving with it), or null.
unsafe fn resize(block: Block, size: usize) -> *mut u8 {
    // SAFETY: the block's own system layout, and a size whose layout is valid (`is_large`).
    let base = unsafe { System.realloc(block.base, system_layout(block.capacity), size + HEADER) };
    if base.is_null() {
        return base;
    }
    // SAFETY: `base` starts `size + HEADER` bytes aligned to HEADER.
    unsafe { hand_out(base, size) }
}

impl Recycling {
    pub const fn new() -> Self {
        Recycling {
            locked: AtomicBool::new(false),
            cache: UnsafeCell::new(Cache {
                blocks: [None; KEEP_BLOCKS],
                bytes: 0,
            }),
            keepers: AtomicUsize::new(0),
        }
    }

    /// Keeps large freed blocks until the guard (and every other) is dropped.
    pub fn keeping(&self) -> Keeping<'_> {
        self.keepers.fetch_add(1, Ordering::AcqRel);
        Keeping(self)
    }

    /// The cache if no other thread holds it now.
    fn try_hold(&self) -> Option<Held<'_>> {
        self.locked
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .ok()
            .map(|_| Held(self))
    }

    /// The cache, waiting a little for it (another thread holds it for a few instructions at most, unless this is
    /// a process forked while it did).
    fn hold_patiently(&self) -> Option<Held<'_>> {
        (0..PATIENCE).find_map(|_| {
            let held = self.try_hold();
            if held.is_none() {
                std::thread::yield_now();
            }
            held
        })
    }

    /// Bytes of freed blocks kept now.
    pub fn kept_bytes(&self) -> usize {
        self.hold_patiently().map_or(0, |cache| cache.bytes)
    }

    /// Gives every kept block back to the system.
    pub fn release(&self) {
        let Some(mut cache) = self.hold_patiently() else {
            return;
        };
        let kept = std::mem::replace(&mut cache.blocks, [None; KEEP_BLOCKS]);
        cache.bytes = 0;
        drop(cache);
        for block in kept.into_iter().flatten() {
            // SAFETY: taken out of the cache above.
            unsafe { give_back(block) };
        }
    }

    /// The largest kept block that holds `size` bytes and is at most `MAX_WASTE` times it, taken out of the
    /// cache: the largest, so that a buffer that then grows (by doubling) grows in place.
    #[inline(never)] // the large path, rare: out of every allocation site
    fn take(&self, size: usize) -> Option<Block> {
        let mut cache = self.try_hold()?;
        let slot = (0..KEEP_BLOCKS)
            .filter(|&i| cache.blocks[i].is_some_and(|b| b.capacity >= size && b.capacity / MAX_WASTE <= size))
            .max_by_key(|&i| cache.blocks[i].map_or(0, |b| b.capacity))?;
        let block = cache.blocks[slot].take()?;
        cache.bytes -= block.capacity;
        Some(block)
    }

    /// Keeps a freed block, in an empty slot or in place of the smallest kept one when it is larger, within the
    /// byte bound and while some guard lives; gives it (or the one it replaced) back to the system otherwise.
    #[inline(never)] // the large path, rare: out of every allocation site
    unsafe fn keep(&self, block: Block) {
        let mut out = Some(block);
        if let Some(mut cache) = self.try_hold() {
            // Read under the lock: the last guard's release, which takes the lock after the count falls to 0,
            // then either finds this block kept and frees it, or this finds the count at 0.
            if self.keepers.load(Ordering::Acquire) > 0 {
                let capacity = |b: Option<Block>| b.map_or(0, |b| b.capacity);
                let slot = (0..KEEP_BLOCKS).min_by_key(|&i| capacity(cache.blocks[i])).unwrap_or(0);
                let replaced = capacity(cache.blocks[slot]);
                if replaced < block.capacity && cache.bytes - replaced + block.capacity <= KEEP_BYTES {
                    out = cache.blocks[slot].replace(block);
                    cache.bytes = cache.bytes - replaced + block.capacity;
                }
            }
        }
        if let Some(block) = out {
            // SAFETY: not kept, and no longer held by anyone.
            unsafe { give_back(block) };
        }
    }

    #[inline(never)] // the large path, rare: out of every allocation site
    unsafe fn alloc_large(&self, size: usize, zeroed: bool) -> *mut u8 {
        if let Some(block) = self.take(size) {
            // SAFETY: a kept block holds `capacity >= size` bytes after its header.
            unsafe {
                let ptr = hand_out(block.base, block.capacity);
                if zeroed {
                    ptr::write_bytes(ptr, 0, size);
                }
                return ptr;
            }
        }
        let layout = system_layout(size);
        // SAFETY: a layout of non-zero size.
        let base = unsafe {
            if zeroed {
                System.alloc_zeroed(layout)
            } else {
                System.alloc(layout)
            }
        };
        if base.is_null() {
            return base;
        }
        // SAFETY: `base` starts `size + HEADER` bytes aligned to HEADER.
        unsafe { hand_out(base, size) }
    }
}

// SAFETY: every pointer handed out is either the system's (layouts that are not large, passed through with the
// same layout) or HEADER bytes into a system block of `capacity + HEADER` bytes aligned to HEADER, `capacity` at
// least the layout's size, and a large layout's alignment at most HEADER; a block is kept or handed out, never
// both.
unsafe impl GlobalAlloc for Recycling {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if is_large(layout) {
            // SAFETY: see the impl.
            unsafe { self.alloc_large(layout.size(), false) }
        } else {
            // SAFETY: the caller's layout, passed through.
            unsafe { System.alloc(layout) }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if is_large(layout) {
            // SAFETY: see the impl.
            unsafe { self.alloc_large(layout.size(), true) }
        } else {
            // SAFETY: the caller's layout, passed through.
            unsafe { System.alloc_zeroed(layout) }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if is_large(layout) {
            // SAFETY: a large pointer was handed out by `hand_out`; the caller gives it up.
            unsafe { self.keep(block_of(ptr)) }
        } else {
            // SAFETY: the caller's pointer and layout, passed through.
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller's alignment, and a size that fits it (GlobalAlloc::realloc's contract).
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        if !is_large(layout) && !is_large(new_layout) {
            // SAFETY: the caller's pointer and layout, passed through.
            return unsafe { System.realloc(ptr, layout, new_size) };
        }
        // SAFETY: the caller's pointer, layout and new size.
        unsafe { self.realloc_large(ptr, layout, new_layout) }
    }
}

impl Recycling {
    /// [`GlobalAlloc::realloc`] where the old layout or the new one is large.
    #[inline(never)] // the large path, rare: out of every allocation site
    unsafe fn realloc_large(&self, ptr: *mut u8, layout: Layout, new_layout: Layout) -> *mut u8 {
        let new_size = new_layout.size();
        if !(is_large(layout) && is_large(new_layout)) {
            // Across the threshold: an allocation of the other kind, the contents copied, the old one freed.
            // SAFETY: `new_layout` is valid; the old pointer is freed with the layout it was allocated with.
            unsafe {
                let to = self.alloc(new_layout);
                if !to.is_null() {
                    ptr::copy_nonoverlapping(ptr, to, layout.size().min(new_size));
                    self.dealloc(ptr, layout);
                }
                return to;
            }
        }
        // SAFETY: a large pointer was handed out by `hand_out`.
        let block = unsafe { block_of(ptr) };
        let shrinks_below_half = new_size < layout.size() && new_size < block.capacity / 2;
        if new_size <= block.capacity && !shrinks_below_half {
            return ptr; // grows into, or shrinks a little within, the room it has
        }
        if new_size > block.capacity {
            if let Some(larger) = self.take(new_size) {
                // SAFETY: the kept block holds `new_size > layout.size()` bytes; the old block is given up.
                unsafe {
                    let to = hand_out(larger.base, larger.capacity);
                    ptr::copy_nonoverlapping(ptr, to, layout.size());
                    self.keep(block);
                    return to;
                }
            }
        }
        // Past its capacity with no kept block to move to, or shrunk below half of it: the system resizes it.
        // SAFETY: a block handed out, resized to a large size.
        unsafe { resize(block, new_size) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::hint::black_box;

    fn layout(size: usize, align: usize) -> Layout {
        Layout::from_size_align(size, align).unwrap()
    }

    #[test]
    fn a_freed_large_block_serves_the_next_large_request_and_keeps_its_contents_across_growth() {
        let a = Recycling::new();
        let guard = a.keeping();
        unsafe {
            let first = a.alloc(layout(LARGE * 2, 16));
            assert_eq!(first as usize % 16, 0);
            first.write_bytes(7, LARGE * 2);
            a.dealloc(first, layout(LARGE * 2, 16));
            assert_eq!(a.kept_bytes(), LARGE * 2);
            // A smaller large request takes it, and grows into it in place.
            let second = a.alloc(layout(LARGE, 1));
            assert_eq!(second, first);
            assert_eq!(a.kept_bytes(), 0);
            let grown = a.realloc(second, layout(LARGE, 1), LARGE * 2);
            assert_eq!(grown, first);
            assert_eq!(*grown.add(LARGE * 2 - 1), 7);
            // Past its capacity: moved by the system allocator, the contents kept.
            let moved = a.realloc(grown, layout(LARGE * 2, 1), LARGE * 3);
            assert_eq!(*moved.add(LARGE * 2 - 1), 7);
            // Shrunk below the threshold: a small allocation of the system's, with the head of the contents.
            let small = a.realloc(moved, layout(LARGE * 3, 1), 100);
            assert_eq!(*small.add(99), 7);
            // And back above it.
            let again = a.realloc(small, layout(100, 1), LARGE);
            assert_eq!(*again.add(99), 7);
            a.dealloc(again, layout(LARGE, 1));
            // Zeroed, even from a block that held something.
            let kept = a.kept_bytes();
            assert!(kept >= LARGE);
            let zeroed = a.alloc_zeroed(layout(LARGE, 8));
            assert!(a.kept_bytes() < kept, "the kept block was used");
            assert!(std::slice::from_raw_parts(zeroed, LARGE).iter().all(|&b| b == 0));
            a.dealloc(zeroed, layout(LARGE, 8));
        }
        drop(guard);
        assert_eq!(a.kept_bytes(), 0, "the last guard gives every block back");
        unsafe {
            let p = a.alloc(layout(LARGE, 1));
            a.dealloc(p, layout(LARGE, 1));
        }
        assert_eq!(a.kept_bytes(), 0, "nothing is kept without a guard");
    }

    #[test]
    fn the_cache_is_bounded_keeps_the_largest_and_skips_blocks_much_larger_than_asked() {
        let a = Recycling::new();
        let _guard = a.keeping();
        unsafe {
            let sizes = [LARGE, LARGE * 3, LARGE * 2, LARGE * 5, LARGE, LARGE * 4];
            let blocks: Vec<*mut u8> = sizes.iter().map(|&s| a.alloc(layout(s, 8))).collect();
            for (&b, &s) in blocks.iter().zip(&sizes) {
                a.dealloc(b, layout(s, 8));
            }
            assert_eq!(a.kept_bytes(), LARGE * (5 + 4 + 3 + 2), "the four largest");
            a.release();
            let huge = a.alloc(layout(LARGE * MAX_WASTE * 2, 8));
            a.dealloc(huge, layout(LARGE * MAX_WASTE * 2, 8));
            assert_eq!(a.kept_bytes(), LARGE * MAX_WASTE * 2);
            let small_large = a.alloc(layout(LARGE, 8));
            assert_ne!(
                small_large, huge,
                "a block 2 * MAX_WASTE times the request is not handed out"
            );
            a.dealloc(small_large, layout(LARGE, 8));
            // Past the byte bound: given back, not kept.
            let over = a.alloc(layout(KEEP_BYTES, 8));
            a.dealloc(over, layout(KEEP_BYTES, 8));
            assert_eq!(a.kept_bytes(), LARGE * (MAX_WASTE * 2 + 1));
            // Alignments past the header's go to the system allocator, as do small requests.
            let aligned = a.alloc(layout(LARGE, 4096));
            assert_eq!(aligned as usize % 4096, 0);
            a.dealloc(aligned, layout(LARGE, 4096));
        }
        a.release();
    }

    #[test]
    fn a_block_shrunk_below_half_gives_the_rest_back_and_oversized_requests_fail_cleanly() {
        let a = Recycling::new();
        let _guard = a.keeping();
        unsafe {
            let p = a.alloc(layout(LARGE * 4, 8));
            p.add(LARGE - 1).write(3);
            let q = a.realloc(p, layout(LARGE * 4, 8), LARGE * 3);
            assert_eq!(
                (q, block_of(q).capacity),
                (p, LARGE * 4),
                "kept in place within half its capacity"
            );
            let r = a.realloc(q, layout(LARGE * 3, 8), LARGE);
            assert_eq!(block_of(r).capacity, LARGE, "resized by the system below half");
            assert_eq!(*r.add(LARGE - 1), 3);
            // A request that takes a block far larger than itself grows in it in place, even below its half.
            let big = a.alloc(layout(LARGE * 8, 8));
            a.dealloc(big, layout(LARGE * 8, 8));
            let small = a.alloc(layout(LARGE, 8));
            assert_eq!((small, block_of(small).capacity), (big, LARGE * 8));
            let grown = a.realloc(small, layout(LARGE, 8), LARGE * 2);
            assert_eq!(grown, small, "grown in place");
            a.dealloc(grown, layout(LARGE * 2, 8));
            // Sizes past what a machine grants: null, whichever path they take, and the old block intact.
            // (black_box: the optimiser may assume that an allocation whose pointer is never used succeeded.)
            for size in [
                isize::MAX as usize / 2,
                isize::MAX as usize / 2 + 1,
                isize::MAX as usize - 16,
            ] {
                assert!(black_box(a.alloc(layout(black_box(size), 8))).is_null());
                assert!(black_box(a.alloc_zeroed(layout(black_box(size), 8))).is_null());
                assert!(black_box(a.realloc(r, layout(LARGE, 8), black_box(size))).is_null());
                assert_eq!(*r.add(LARGE - 1), 3);
            }
            a.dealloc(r, layout(LARGE, 8));
        }
    }

    #[test]
    fn threads_growing_and_freeing_buffers_at_once_keep_their_contents() {
        // Four threads double buffers from 1 MiB to 32 MiB (across the threshold) and free them, marking and
        // checking every page; one of them drops and takes a guard as it goes, so that releases race the rest.
        let a = Recycling::new();
        let guard = a.keeping();
        std::thread::scope(|scope| {
            for t in 0..4u8 {
                let a = &a;
                scope.spawn(move || {
                    for round in 0..30 {
                        let mut size = 1 << 20;
                        let p = unsafe { a.alloc(layout(size, 8)) };
                        let mut p = p;
                        let mark = t * 31 + round as u8;
                        unsafe { (0..size).step_by(4096).for_each(|at| p.add(at).write(mark)) };
                        while size < 32 << 20 {
                            p = unsafe { a.realloc(p, layout(size, 8), size * 2) };
                            unsafe {
                                assert!((0..size).step_by(4096).all(|at| *p.add(at) == mark));
                                (size..size * 2).step_by(4096).for_each(|at| p.add(at).write(mark));
                            }
                            size *= 2;
                        }
                        unsafe { a.dealloc(p, layout(size, 8)) };
                        if t == 0 {
                            drop(a.keeping()); // a guard that comes and goes: no release while `guard` lives
                        }
                    }
                });
            }
        });
        assert!(a.kept_bytes() <= KEEP_BYTES);
        drop(guard);
        assert_eq!(a.kept_bytes(), 0);
    }

    #[derive(Debug, Clone)]
    enum Op {
        /// Size, zeroed, alignment.
        Alloc(usize, bool, usize),
        Realloc(usize, usize),
        Free(usize),
        /// The guard dropped (every kept block given back) and taken again.
        Renew,
    }

    fn op() -> impl Strategy<Value = Op> {
        // Sizes on both sides of the threshold, up to a few times it.
        let size = prop_oneof![1usize..4096, LARGE - 64..LARGE + 64, LARGE..LARGE * 6];
        prop_oneof![
            (
                size.clone(),
                any::<bool>(),
                prop::sample::select(vec![1usize, 8, 16, 64])
            )
                .prop_map(|(s, z, align)| Op::Alloc(s, z, align)),
            (any::<usize>(), size).prop_map(|(i, s)| Op::Realloc(i, s)),
            any::<usize>().prop_map(Op::Free),
            Just(Op::Renew),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// Any sequence of allocations, reallocations and frees keeps every live allocation's contents (a byte of
        /// its own every 4 KiB and at its end, checked after every step and across each move), and hands out no
        /// memory twice (one allocation's bytes would overwrite another's).
        #[test]
        fn live_allocations_keep_their_contents(ops in proptest::collection::vec(op(), 1..40)) {
            let a = Recycling::new();
            let mut guard = Some(a.keeping());
            let mut live: Vec<(*mut u8, usize, u8, usize)> = Vec::new(); // pointer, size, byte, alignment
            let marks = |size: usize| (0..size).step_by(4096).chain(std::iter::once(size - 1));
            let fill = |p: *mut u8, size: usize, byte: u8| marks(size).for_each(|at| unsafe { p.add(at).write(byte) });
            // The first `size` bytes of an allocation filled with `byte` over `filled` bytes.
            let check = |p: *mut u8, size: usize, filled: usize, byte: u8| {
                for at in marks(size).filter(|&at| at % 4096 == 0 || at == filled - 1) {
                    assert_eq!(unsafe { *p.add(at) }, byte, "byte {at} of {size}");
                }
            };
            for (step, op) in ops.into_iter().enumerate() {
                let byte = (step % 251) as u8 + 1;
                unsafe {
                    match op {
                        Op::Alloc(size, zeroed, align) => {
                            let l = layout(size, align);
                            let p = if zeroed { a.alloc_zeroed(l) } else { a.alloc(l) };
                            prop_assert_eq!(p as usize % align, 0);
                            if zeroed {
                                prop_assert!(std::slice::from_raw_parts(p, size).iter().all(|&b| b == 0));
                            }
                            fill(p, size, byte);
                            live.push((p, size, byte, align));
                        }
                        Op::Realloc(i, size) if !live.is_empty() => {
                            let (p, old, was, align) = live.swap_remove(i % live.len());
                            let q = a.realloc(p, layout(old, align), size);
                            prop_assert_eq!(q as usize % align, 0);
                            check(q, old.min(size), old, was);
                            fill(q, size, byte);
                            live.push((q, size, byte, align));
                        }
                        Op::Free(i) if !live.is_empty() => {
                            let (p, size, was, align) = live.swap_remove(i % live.len());
                            check(p, size, size, was);
                            a.dealloc(p, layout(size, align));
                        }
                        Op::Renew => {
                            drop(guard.take());
                            prop_assert_eq!(a.kept_bytes(), 0);
                            guard = Some(a.keeping());
                        }
                        _ => {}
                    }
                }
                for &(p, size, was, _) in &live {
                    check(p, size, size, was);
                }
                prop_assert!(a.kept_bytes() <= KEEP_BYTES);
            }
            for (p, size, _, align) in live {
                unsafe { a.dealloc(p, layout(size, align)) };
            }
            drop(guard);
            prop_assert_eq!(a.kept_bytes(), 0);
        }
    }
}
