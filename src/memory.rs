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
pub const HEAP_TRIM_INTERVAL: Duration = Duration::from_secs(10);

/// Returns the allocator's free pages to the kernel. A no-op where the C library is not glibc.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `malloc_trim` takes no pointers; it works on glibc's own allocator state under that
    // allocator's locks, and leaves every allocation in use where it is.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Hands free heap pages back every `interval` until `stop`.
pub async fn trim_heap_every(interval: Duration, stop: CancellationToken) {
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
    fn freed_heap_held_below_a_live_allocation_goes_back_to_the_kernel() {
        const MIB: u64 = 1024;
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
