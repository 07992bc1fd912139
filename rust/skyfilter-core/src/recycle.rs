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
//! to its capacity and grows in place up to it (`realloc`), whatever size was asked first. Large requests are
//! those aligned to at most [`HEADER`] bytes (`Vec`s of bytes and numbers; arrow's own 64-byte aligned
//! buffers go to the system allocator), so the system blocks under them are plain `malloc` blocks, and a block
//! that grows past its capacity is `realloc`ed (moved by remapping, not copied). The cache is taken with
//! `try_lock`: a thread that finds it taken uses the system allocator, so no thread ever waits here (nor does a
//! process forked while another thread held it).

use std::alloc::{GlobalAlloc, Layout, System};
use std::ptr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// Allocations of at least this many bytes are large: they carry a header and may be recycled.
pub const LARGE: usize = 4 << 20;
/// At most this many freed blocks are kept.
pub const KEEP_BLOCKS: usize = 4;
/// At most this many bytes of freed blocks are kept, together.
pub const KEEP_BYTES: usize = 512 << 20;
/// A kept block serves requests of at least 1/`MAX_WASTE` of its capacity (arrow's decoder starts a batch's
/// buffer at a few MB and doubles it up to 90 MB).
const MAX_WASTE: usize = 32;
/// The header before a large block's pointer, holding its capacity; also the largest alignment of a large
/// request (the alignment `malloc` gives every block).
pub const HEADER: usize = 16;

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

// SAFETY: the kept blocks belong to the cache alone (freed by their last user, not yet handed out again).
unsafe impl Send for Cache {}

/// The allocator: [`System`], with a small cache of freed large blocks in front of it.
pub struct Recycling {
    cache: Mutex<Cache>,
    /// Live [`Keeping`] guards.
    keepers: AtomicUsize,
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

impl Recycling {
    pub const fn new() -> Self {
        Recycling {
            cache: Mutex::new(Cache {
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

    /// Bytes of freed blocks kept now.
    pub fn kept_bytes(&self) -> usize {
        self.cache.lock().map_or(0, |c| c.bytes)
    }

    /// Gives every kept block back to the system.
    pub fn release(&self) {
        let mut kept = [None; KEEP_BLOCKS];
        if let Ok(mut cache) = self.cache.lock() {
            kept = std::mem::replace(&mut cache.blocks, [None; KEEP_BLOCKS]);
            cache.bytes = 0;
        }
        for block in kept.into_iter().flatten() {
            // SAFETY: taken out of the cache above.
            unsafe { give_back(block) };
        }
    }

    /// The largest kept block that holds `size` bytes without wasting most of itself, taken out of the cache:
    /// the largest, so that a buffer that then grows (by doubling) grows in place.
    fn take(&self, size: usize) -> Option<Block> {
        let mut cache = self.cache.try_lock().ok()?;
        let slot = (0..KEEP_BLOCKS)
            .filter(|&i| cache.blocks[i].is_some_and(|b| b.capacity >= size && b.capacity / MAX_WASTE <= size))
            .max_by_key(|&i| cache.blocks[i].map_or(0, |b| b.capacity))?;
        let block = cache.blocks[slot].take()?;
        cache.bytes -= block.capacity;
        Some(block)
    }

    /// Keeps a freed block, in an empty slot or in place of the smallest kept one when it is larger, within the
    /// byte bound and while some guard lives; gives it (or the one it replaced) back to the system otherwise.
    unsafe fn keep(&self, block: Block) {
        let mut out = Some(block);
        if self.keepers.load(Ordering::Acquire) > 0 {
            if let Ok(mut cache) = self.cache.try_lock() {
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
        match (is_large(layout), is_large(new_layout)) {
            // SAFETY: the caller's pointer and layout, passed through.
            (false, false) => unsafe { System.realloc(ptr, layout, new_size) },
            (true, true) => {
                // SAFETY: a large pointer was handed out by `hand_out`.
                let block = unsafe { block_of(ptr) };
                if new_size <= block.capacity {
                    return ptr; // grows into, or shrinks within, the room it has
                }
                if let Some(larger) = self.take(new_size) {
                    // SAFETY: the kept block holds `new_size > layout.size()` bytes; the old block is given up.
                    unsafe {
                        let to = hand_out(larger.base, larger.capacity);
                        ptr::copy_nonoverlapping(ptr, to, layout.size());
                        self.keep(block);
                        return to;
                    }
                }
                // SAFETY: the block's own system layout; the header moves with the contents.
                let base = unsafe { System.realloc(block.base, system_layout(block.capacity), new_size + HEADER) };
                if base.is_null() {
                    return base;
                }
                // SAFETY: `base` starts `new_size + HEADER` bytes aligned to HEADER.
                unsafe { hand_out(base, new_size) }
            }
            // Across the threshold: an allocation of the other kind, the contents copied, the old one freed.
            _ => {
                // SAFETY: `new_layout` is valid; the old pointer is freed with the layout it was allocated with.
                unsafe {
                    let to = self.alloc(new_layout);
                    if !to.is_null() {
                        ptr::copy_nonoverlapping(ptr, to, layout.size().min(new_size));
                        self.dealloc(ptr, layout);
                    }
                    to
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

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
            assert_ne!(small_large, huge, "a block 64 times the request is not handed out");
            a.dealloc(small_large, layout(LARGE, 8));
            // Past the byte bound: given back, not kept.
            let over = a.alloc(layout(KEEP_BYTES, 8));
            a.dealloc(over, layout(KEEP_BYTES, 8));
            assert!(a.kept_bytes() <= KEEP_BYTES);
            // Alignments past the header's go to the system allocator, as do small requests.
            let aligned = a.alloc(layout(LARGE, 4096));
            assert_eq!(aligned as usize % 4096, 0);
            a.dealloc(aligned, layout(LARGE, 4096));
        }
        a.release();
    }

    #[derive(Debug, Clone)]
    enum Op {
        Alloc(usize, bool),
        Realloc(usize, usize),
        Free(usize),
    }

    fn op() -> impl Strategy<Value = Op> {
        // Sizes on both sides of the threshold, up to a few times it.
        let size = prop_oneof![1usize..4096, LARGE - 64..LARGE + 64, LARGE..LARGE * 6];
        prop_oneof![
            (size.clone(), any::<bool>()).prop_map(|(s, z)| Op::Alloc(s, z)),
            (any::<usize>(), size).prop_map(|(i, s)| Op::Realloc(i, s)),
            any::<usize>().prop_map(Op::Free),
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
            let guard = a.keeping();
            let mut live: Vec<(*mut u8, usize, u8)> = Vec::new();
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
                        Op::Alloc(size, zeroed) => {
                            let p = if zeroed { a.alloc_zeroed(layout(size, 8)) } else { a.alloc(layout(size, 8)) };
                            if zeroed {
                                prop_assert!(std::slice::from_raw_parts(p, size).iter().all(|&b| b == 0));
                            }
                            fill(p, size, byte);
                            live.push((p, size, byte));
                        }
                        Op::Realloc(i, size) if !live.is_empty() => {
                            let (p, old, was) = live.swap_remove(i % live.len());
                            let q = a.realloc(p, layout(old, 8), size);
                            check(q, old.min(size), old, was);
                            fill(q, size, byte);
                            live.push((q, size, byte));
                        }
                        Op::Free(i) if !live.is_empty() => {
                            let (p, size, was) = live.swap_remove(i % live.len());
                            check(p, size, size, was);
                            a.dealloc(p, layout(size, 8));
                        }
                        _ => {}
                    }
                }
                for &(p, size, was) in &live {
                    check(p, size, size, was);
                }
                prop_assert!(a.kept_bytes() <= KEEP_BYTES);
            }
            for (p, size, _) in live {
                unsafe { a.dealloc(p, layout(size, 8)) };
            }
            drop(guard);
            prop_assert_eq!(a.kept_bytes(), 0);
        }
    }
}
