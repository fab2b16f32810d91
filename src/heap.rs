//! The Rust heap, counted: `Counting`, the binary's global allocator (set
//! in `main.rs`), is the system's with, once `limit` was called, a count
//! of the bytes the program holds (each allocation with the allocator's
//! own overhead, `charged`) and a ceiling past which the process ends at
//! once with a prepared message and exit code. Only the local
//! engine's jobs set one (`engine::bounds`); before that, and in every
//! other command, an allocation costs one relaxed load more.
//!
//! Each thread adds up its own allocations and frees and hands the sum to
//! the shared count every `BATCH` bytes, so that threads allocating at once
//! do not all write one cache line: the count is off by at most `BATCH` per
//! thread.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicIsize, AtomicU64, Ordering::Relaxed};

pub struct Counting;

/// `u64::MAX` until `limit`: then nothing is counted.
static CEILING: AtomicU64 = AtomicU64::new(u64::MAX);
/// Bytes allocated less bytes freed since `limit`, as handed over by the
/// threads.
static USED: AtomicIsize = AtomicIsize::new(0);
/// What is written to standard error past the ceiling, and the exit code.
static STOP: OnceLock<(Box<[u8]>, i32)> = OnceLock::new();

const BATCH: isize = 64 << 10;

thread_local! {
    /// This thread's allocations less its frees not yet in `USED`. A
    /// constant initializer and no destructor: reading it never allocates.
    static PENDING: Cell<isize> = const { Cell::new(0) };
}

/// Starts counting: past `ceiling` bytes held (counted from now), the
/// process writes `message` to standard error and exits with `code`,
/// without unwinding. Once per process; later calls change nothing.
pub fn limit(ceiling: u64, message: String, code: i32) {
    if STOP
        .set((message.into_bytes().into_boxed_slice(), code))
        .is_ok()
    {
        CEILING.store(ceiling, Relaxed);
    }
}

/// The bytes held since `limit` (0 before it).
pub fn used() -> u64 {
    USED.load(Relaxed).max(0) as u64
}

/// What an allocation of `size` bytes costs the process: the allocator's
/// header and rounding too (glibc's: 8 bytes, 16-byte chunks of at least
/// 32), so that many small allocations count about what they hold.
fn charged(size: usize) -> isize {
    (size.saturating_add(8 + 15) & !15).max(32) as isize
}

fn note(delta: isize) {
    let ceiling = CEILING.load(Relaxed);
    if ceiling == u64::MAX {
        return;
    }
    let pending = PENDING.get() + delta;
    if pending.abs() < BATCH {
        PENDING.set(pending);
        return;
    }
    PENDING.set(0);
    let total = USED.fetch_add(pending, Relaxed) + pending;
    if total > 0 && total as u64 > ceiling {
        stop();
    }
}

/// Past the ceiling: the prepared message, and `_exit` (no allocation, no
/// destructor, no lock the interrupted code might hold).
#[cold]
fn stop() -> ! {
    if let Some((message, code)) = STOP.get() {
        // SAFETY: writes bytes the static owns; `_exit` never returns.
        unsafe {
            libc::write(2, message.as_ptr().cast(), message.len());
            libc::_exit(*code)
        }
    }
    // SAFETY: as above.
    unsafe { libc::_exit(1) }
}

// SAFETY: every call is forwarded to `System` unchanged; only the count is
// added, which allocates nothing.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract is `System`'s.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            note(charged(layout.size()));
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as above.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            note(charged(layout.size()));
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) };
        note(-charged(layout.size()));
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as above.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            note(charged(new_size) - charged(layout.size()));
        }
        p
    }
}
