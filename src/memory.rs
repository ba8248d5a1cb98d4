//! Handing freed heap back to the kernel.
//!
//! glibc's allocator keeps most freed memory mapped for reuse: after a transient high (a list
//! decoded page by page, a backlog held while the collector was down, a burst of records), the
//! process's RSS stays at that high although what is in use is far less. Measured in the soak
//! bench: a 15-second collector restart left the RSS 12 MiB above its steady value, all of it
//! free heap. So after every list, after every export burst (`export::task::BURST_RECORDS`), and
//! every [`HEAP_TRIM_INTERVAL`], the agent asks glibc to give the free pages of every arena back
//! (`malloc_trim`): the RSS follows what is in use; nothing in use moves.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// How often free heap pages are handed back to the kernel.
pub(crate) const HEAP_TRIM_INTERVAL: Duration = Duration::from_secs(10);

/// Returns the allocator's free pages to the kernel. A no-op where the C library is not glibc.
pub(crate) fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `malloc_trim` takes no pointers; it works on glibc's own allocator state under that
    // allocator's locks, and leaves every allocation in use where it is.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// The malloc arenas the agent allocates from, unless `MALLOC_ARENA_MAX` or `GLIBC_TUNABLES` sets
/// them. glibc gives each thread that allocates under contention an arena of its own (up to 8 per
/// core); the runtime's worker threads each get one, and what one frees another reuses only within
/// its own arena, so every arena keeps its own slack of free space in pages still partly in use,
/// which `malloc_trim` cannot return. The agent allocates little and rarely at once: one arena
/// costs it no measurable time and keeps one slack, not one per thread (docs/performance.md, the
/// soak).
pub(crate) const MALLOC_ARENAS: i32 = 1;

/// The arena limit to set, given the environment's `MALLOC_ARENA_MAX` and `GLIBC_TUNABLES`: none
/// when either already sets one (the operator's choice wins).
pub(crate) fn arena_limit(arena_max_env: Option<&str>, tunables_env: Option<&str>) -> Option<i32> {
    let tuned = tunables_env.is_some_and(|t| t.split(':').any(|kv| kv.trim().starts_with("glibc.malloc.arena_max=")));
    (arena_max_env.is_none() && !tuned).then_some(MALLOC_ARENAS)
}

/// Limits the malloc arenas to [`arena_limit`]. Call before any thread starts: a thread that has
/// an arena keeps it. A no-op where the C library is not glibc.
pub fn limit_arenas() {
    let env = |name| std::env::var(name).ok();
    let Some(arenas) = arena_limit(env("MALLOC_ARENA_MAX").as_deref(), env("GLIBC_TUNABLES").as_deref()) else {
        return;
    };
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `mallopt` takes no pointers; it sets a parameter of glibc's allocator under its lock.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, arenas);
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    let _ = arenas;
}

/// What the allocator holds, in bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct HeapBytes {
    /// Allocated and not yet freed.
    pub in_use: u64,
    /// The heap's address space: in use, and free (kept for reuse, resident or with its pages
    /// handed back by a trim). Not resident memory: the RSS can be well below it.
    pub mapped: u64,
}

/// What the allocator holds now, over all arenas (glibc's `mallinfo2`, which walks each arena's free
/// lists under its lock: for a scrape, not a hot path). `None` where the C library is not glibc.
pub(crate) fn heap_bytes() -> Option<HeapBytes> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: `mallinfo2` takes no arguments and returns a plain struct by value.
        let m = unsafe { libc::mallinfo2() };
        let mmapped = m.hblkhd as u64;
        Some(HeapBytes { in_use: m.uordblks as u64 + mmapped, mapped: m.arena as u64 + mmapped })
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    None
}

/// Hands free heap pages back every `interval` until `stop`.
pub(crate) async fn trim_heap_every(interval: Duration, stop: CancellationToken) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => release_free_memory(),
        }
    }
}

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod tests {
    use super::*;

    fn rss_anon_kib() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = status.lines().find(|l| l.starts_with("RssAnon:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    #[test]
    fn the_operators_arena_setting_wins_over_the_agents() {
        let cases = [
            (None, None, Some(MALLOC_ARENAS)),
            (Some("4"), None, None),
            (None, Some("glibc.malloc.arena_max=4"), None),
            (None, Some("glibc.malloc.tcache_count=0:glibc.malloc.arena_max=2"), None),
            (None, Some("glibc.malloc.trim_threshold=131072"), Some(MALLOC_ARENAS)),
        ];
        for (arena_max, tunables, want) in cases {
            assert_eq!(
                arena_limit(arena_max, tunables),
                want,
                "MALLOC_ARENA_MAX={arena_max:?} GLIBC_TUNABLES={tunables:?}"
            );
        }
    }

    /// The process's heap is shared by the tests running beside these: the two that move tens of
    /// MiB run one at a time, and the margins leave room for the others' few MiB.
    static LARGE: std::sync::Mutex<()> = std::sync::Mutex::new(());

    #[test]
    fn heap_in_use_counts_a_live_allocation_and_not_a_freed_one() {
        const MIB: u64 = 1 << 20;
        let _one_at_a_time = LARGE.lock().unwrap();
        let before = heap_bytes().unwrap();
        // 64 MiB of small blocks (not mmapped one by one), held, then freed.
        let blocks: Vec<Box<[u8; 512]>> = (0..128 * 1024).map(|_| Box::new([1u8; 512])).collect();
        let held = heap_bytes().unwrap();
        drop(blocks);
        let after = heap_bytes().unwrap();
        assert!(held.in_use >= before.in_use + 40 * MIB, "{before:?} then {held:?}");
        assert!(held.mapped >= held.in_use, "{held:?}");
        assert!(after.in_use + 40 * MIB <= held.in_use, "{held:?} then {after:?}");
    }

    #[test]
    fn freed_heap_held_below_a_live_allocation_goes_back_to_the_kernel() {
        const MIB: u64 = 1024;
        let _one_at_a_time = LARGE.lock().unwrap();
        // 64 MiB of small allocations, then one more above them: freeing the 64 MiB leaves it
        // free inside the heap, where glibc keeps it mapped.
        let mut blocks: Vec<Box<[u8; 1024]>> = (0..64 * 1024).map(|_| Box::new([1u8; 1024])).collect();
        let above = Box::new([2u8; 1024]);
        blocks.clear();
        blocks.shrink_to_fit();
        let before = rss_anon_kib();
        release_free_memory();
        let after = rss_anon_kib();
        assert_eq!(above[0], 2);
        assert!(after + 32 * MIB < before, "RssAnon {before} KiB before the trim, {after} KiB after");
    }
}
