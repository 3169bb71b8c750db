//! A software prefetch hint for the fan-out loop.
//!
//! Fan-out to 100,000 connections is bound by cache misses, not by instructions: each
//! recipient costs one line of shared connection state and one hand-off slot, usually last
//! written by another core (the transport that drained it). Hinting those lines a few
//! iterations ahead lets the misses overlap. A prefetch is only a hint: it never faults,
//! whatever the address, and changes no program state, so the `unsafe` below has no
//! memory-safety obligation.

/// Hints the CPU to bring the cache line holding `p` into L1 in a writable state
/// (`prefetchw`: the line is about to be written, so fetching it shared would cost a second
/// round trip to invalidate the other copies). No-op off x86-64; a `nop` on x86-64 CPUs
/// without the instruction.
#[inline(always)]
pub(crate) fn prefetch_write<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `prefetchw` never dereferences its address architecturally (no fault, no read
    // visible to the program), so any pointer value is sound; it touches no stack or flags.
    #[allow(unsafe_code)]
    unsafe {
        std::arch::asm!(
            "prefetchw [{p}]",
            p = in(reg) p,
            options(nostack, preserves_flags, readonly)
        );
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}
