//! Waiting for a child process without hanging the test run.

use std::process::{Child, Output};
use std::time::{Duration, Instant};

/// Waits for `child`; kills it if it is still running at `limit` (a hang guard, so that the test
/// fails rather than hangs: the assertion is on the exit, not on the time).
pub fn wait_or_kill(mut child: Child, limit: Duration) -> Output {
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > limit {
            child.kill().unwrap();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}
