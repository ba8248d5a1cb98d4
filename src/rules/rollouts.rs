//! Rollout regressions, pure: when the failures of a workload's new revision, within a window after
//! its rollout, make a regression (`docs/detection.md`, "Rollout regressions"). The detector keeps
//! the counts (`detector/rollouts.rs`); this is the decision.

use std::time::Duration;

/// How long after a rollout its new revision's failures count (`--rollout-window`).
pub const DEFAULT_ROLLOUT_WINDOW: Duration = Duration::from_secs(15 * 60);
/// The fewest failures of the new revision within the window that make a regression: one
/// failure is noise (a node lost, one bad request).
pub const MIN_FAILURES: u32 = 3;
/// The failing pods counted of a revision, at most: a previous revision with this many failing
/// pods in the window before the rollout was failing already, and no new revision can do worse
/// by this measure (the rule stays quiet).
pub const MAX_FAILING_PODS: usize = 8;

/// Whether the new revision regressed: at least [`MIN_FAILURES`] failures within the window after
/// the rollout, from more of its pods than the previous revision had failing in the window before
/// it. Pods, not failures, are compared: the kubelet's back-off gives a new crash-looping pod more
/// restarts in 15 minutes than an old one, so a rollout of an already crash-looping workload would
/// otherwise look like a regression.
pub fn regressed(failures: u32, failing_pods: usize, previous_failing_pods: usize) -> bool {
    failures >= MIN_FAILURES && failing_pods > previous_failing_pods
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regression_table() {
        // (failures of the new revision, its failing pods, the previous revision's failing pods, regressed)
        let cases = [
            (0, 0, 0, false),
            (2, 1, 0, false),
            (3, 1, 0, true),
            (3, 3, 0, true),
            (9, 1, 1, false),
            (9, 3, 1, true),
            (20, 3, 3, false),
            (50, 8, 8, false),
        ];
        for (failures, pods, previous, want) in cases {
            assert_eq!(
                regressed(failures, pods, previous),
                want,
                "{failures} failures of {pods} pods, {previous} before"
            );
        }
    }
}
