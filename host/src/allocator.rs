//! The process's heap settings, made once at start-up, before any thread exists.
//!
//! glibc's defaults fault in fresh pages for every large object. Each thread gets its
//! own arena, whose heaps are at most 64 MiB and are given back to the kernel (and
//! faulted in again, a page at a time) whenever their top is free; and a buffer over
//! the moving mmap threshold gets its own mapping, unmapped on free. A server that
//! holds objects of megabytes whole paid for them twice: 16 MiB objects took about
//! 1,200 page faults each, and a quarter more CPU than with the settings below.

/// The heap kept for reuse rather than returned to the kernel.
const RETAIN: i32 = 256 << 20;

/// Largest allocation served from the heap: above it, a mapping of its own. glibc
/// accepts at most 32 MiB (half of a heap's maximum).
const MMAP_THRESHOLD: i32 = 32 << 20;

/// Applies the settings unless `GLIBC_TUNABLES` sets malloc tunables itself, so an
/// operator can still choose. `false`: glibc refused one of them.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn tune() -> bool {
    let chosen = std::env::var("GLIBC_TUNABLES").is_ok_and(|t| t.contains("glibc.malloc."));
    if chosen {
        return true;
    }
    // One arena: the main heap grows in place, where a thread's arena would reach its
    // 64 MiB limit with a few objects of 16 MiB and map (and fault in) the rest. The
    // threads' caches still serve small allocations without taking its lock.
    // SAFETY: mallopt takes malloc's lock and changes only its parameters. Called
    // before other threads exist, the arena limit holds for every thread.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1) == 1
            && libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
            && libc::mallopt(libc::M_TRIM_THRESHOLD, RETAIN) == 1
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn tune() -> bool {
    true
}

#[cfg(test)]
mod tests {
    #[test]
    fn glibc_accepts_the_settings() {
        assert!(super::tune());
    }
}
