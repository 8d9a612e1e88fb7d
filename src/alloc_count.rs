//! The allocator of test builds: the system's, counting the allocations
//! each thread makes, so a test can show that a path allocates nothing.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

thread_local! {
    static COUNT: Cell<u64> = const { Cell::new(0) };
}

pub struct Counting;

fn bump() {
    // `try_with`: allocations while the thread's locals are torn down.
    let _ = COUNT.try_with(|c| c.set(c.get() + 1));
}

// SAFETY: every call is passed on to `System` unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        bump();
        // SAFETY: the caller's promises about `layout` are passed on to `System`.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        bump();
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        bump();
        // SAFETY: `ptr` came from `System` through this allocator, with `layout`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System` through this allocator, with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

/// What `f` returns, and how many allocations (and reallocations) this
/// thread made while it ran.
pub fn allocations<R>(f: impl FnOnce() -> R) -> (R, u64) {
    let before = COUNT.with(Cell::get);
    let r = f();
    (r, COUNT.with(Cell::get) - before)
}

#[test]
fn counts_allocations_and_reallocations() {
    let (v, n) = allocations(|| vec![1u8; 100]);
    assert_eq!((v.len(), n), (100, 1));
    let (v, n) = allocations(|| {
        let mut v = Vec::with_capacity(1);
        v.extend_from_slice(&[1u8; 100]);
        v
    });
    assert_eq!((v.len(), n), (100, 2));
    let ((), n) = allocations(|| drop(v));
    assert_eq!(n, 0);
}
