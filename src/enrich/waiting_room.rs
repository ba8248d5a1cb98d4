//! The waiting room, pure: records that wait for a late kube event (their status leaves the cause
//! open) or for their previous logs, within a byte budget. Time is passed in, and the fetches of
//! previous logs are the caller's: the room only asks whether one is done.
//!
//! A record leaves when it has waited long enough for an Event, or found its explanation, and its
//! logs are fetched (or failed); every record leaves when the stage closes. Past the budget, the
//! oldest leave early, before their wait is over, and are counted. None is ever dropped.

use tokio::time::Instant;

use crate::record::Record;
use crate::rules::causes;

/// A fetch in progress, as far as the room needs to know it.
pub(crate) trait Fetch {
    /// It ended (with the logs, or with an error).
    fn done(&self) -> bool;
}

impl<T> Fetch for tokio::task::JoinHandle<T> {
    fn done(&self) -> bool {
        self.is_finished()
    }
}

/// A record in the room.
#[derive(Debug)]
struct Waiting<F> {
    record: Record,
    /// Until when it waits for a late kube event; `None`: it waits only for its logs.
    events_until: Option<Instant>,
    logs: Option<F>,
    /// What it counts against the budget: the record, and the cap of the logs being fetched.
    bytes: usize,
}

/// A record let out of the room, with its fetch (done, or to be given up on).
#[derive(Debug)]
pub struct Released<F> {
    pub record: Record,
    pub logs: Option<F>,
    /// It left before its wait was over, to keep the room within its budget.
    pub early: bool,
}

/// The records waiting, oldest first, and their bytes against the budget.
#[derive(Debug)]
pub(crate) struct WaitingRoom<F> {
    waiting: Vec<Waiting<F>>,
    bytes: usize,
    budget_bytes: usize,
}

impl<F: Fetch> WaitingRoom<F> {
    pub fn new(budget_bytes: usize) -> Self {
        WaitingRoom { waiting: Vec::new(), bytes: 0, budget_bytes }
    }

    pub fn len(&self) -> usize {
        self.waiting.len()
    }

    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }

    /// The bytes of the records waiting.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// `record` waits for a late kube event until `events_until`, and for `logs`; it counts
    /// `bytes` against the budget.
    pub(crate) fn admit(&mut self, record: Record, events_until: Option<Instant>, logs: Option<F>, bytes: usize) {
        self.bytes += bytes;
        self.waiting.push(Waiting { record, events_until, logs, bytes });
    }

    /// The records that leave at `now`, oldest first: those done waiting, all of them when
    /// `closing`, and the oldest of the others while the room is past its budget. Those that wait
    /// for a kube event are classified again first (`reclassify`: the event may have come).
    pub fn release(
        &mut self,
        now: Instant,
        closing: bool,
        mut reclassify: impl FnMut(&mut Record),
    ) -> Vec<Released<F>> {
        let mut out = Vec::new();
        let mut kept = Vec::with_capacity(self.waiting.len());
        for mut w in self.waiting.drain(..) {
            if w.events_until.is_some() {
                reclassify(&mut w.record);
            }
            let waits = !closing && !done(&w, now);
            let early = waits && self.bytes > self.budget_bytes;
            if waits && !early {
                kept.push(w);
                continue;
            }
            self.bytes -= w.bytes;
            out.push(Released { record: w.record, logs: w.logs, early });
        }
        self.waiting = kept;
        out
    }
}

/// It waited long enough for an Event or found its explanation, and its logs are fetched (or
/// failed).
fn done<F: Fetch>(w: &Waiting<F>, now: Instant) -> bool {
    let explained = w.record.cause != causes::restart_cause_from_status(&w.record);
    let events_done = w.events_until.is_none_or(|until| until <= now || explained);
    events_done && w.logs.as_ref().is_none_or(Fetch::done)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::pod::SlimTerminated;
    use crate::record::Cause;

    /// A fetch that is done or not.
    #[derive(Debug)]
    struct Logs(bool);
    impl Fetch for Logs {
        fn done(&self) -> bool {
            self.0
        }
    }

    /// A restart killed by a signal, nothing more said: its cause waits for a kube event.
    fn killed(name: &str) -> Record {
        Record {
            terminated: Some(SlimTerminated { exit_code: 137, ..Default::default() }),
            cause: Cause::Signal,
            ..Record::sample("shop", name, "app", Cause::Signal)
        }
    }

    fn names(out: &[Released<Logs>]) -> Vec<(String, bool)> {
        out.iter().map(|r| (r.record.pod.name.clone(), r.early)).collect()
    }

    #[test]
    fn records_leave_when_their_wait_is_over_explained_or_closing_and_the_oldest_early_past_the_budget() {
        let t0 = Instant::now();
        let secs = |s: u64| t0 + Duration::from_secs(s);
        // (step, the records that leave, early or not)
        let mut room: WaitingRoom<Logs> = WaitingRoom::new(300);
        room.admit(killed("a"), Some(secs(3)), None, 100);
        room.admit(killed("b"), Some(secs(5)), None, 100);
        room.admit(killed("c"), None, Some(Logs(false)), 100);
        assert_eq!(names(&room.release(secs(1), false, |_| {})), vec![], "all wait");
        assert_eq!(names(&room.release(secs(3), false, |_| {})), vec![("a".into(), false)], "a waited long enough");
        // b's kube event arrived: its cause is explained before its wait is over.
        let explain = |r: &mut Record| {
            if r.pod.name == "b" {
                r.cause = Cause::LivenessProbe;
            }
        };
        assert_eq!(names(&room.release(secs(4), false, explain)), vec![("b".into(), false)]);
        assert_eq!(room.bytes(), 100);
        // Past the budget: the oldest leave early until it fits.
        room.admit(killed("d"), Some(secs(10)), None, 150);
        room.admit(killed("e"), Some(secs(10)), None, 150);
        assert_eq!(names(&room.release(secs(4), false, |_| {})), vec![("c".into(), true)]);
        assert_eq!(room.bytes(), 300);
        // Closing: everything leaves, in order, on time.
        assert_eq!(names(&room.release(secs(4), true, |_| {})), vec![("d".into(), false), ("e".into(), false)]);
        assert!(room.is_empty() && room.bytes() == 0);
    }

    #[test]
    fn a_record_waits_for_its_logs_even_once_its_cause_is_known() {
        let t0 = Instant::now();
        let mut room: WaitingRoom<Logs> = WaitingRoom::new(1 << 20);
        room.admit(killed("a"), Some(t0), Some(Logs(false)), 100);
        assert!(room.release(t0, false, |_| {}).is_empty(), "its logs are not fetched yet");
        room.waiting[0].logs = Some(Logs(true));
        let out = room.release(t0, false, |_| {});
        assert_eq!(names(&out), vec![("a".into(), false)]);
        assert!(out[0].logs.as_ref().is_some_and(Logs::done));
    }
}
