//! Properties of the detector and of the replay decoder, over generated inputs (proptest, with a
//! fixed number of cases so CI runs the same amount of work every time). Failures proptest finds
//! are kept in `tests/properties.proptest-regressions` and replayed first.

use std::collections::{BTreeMap, HashSet};

use jiff::Timestamp;
use proptest::prelude::*;
use restart_watcher::detector::Detector;
use restart_watcher::pod::SlimPod;
use restart_watcher::record::Record;
use restart_watcher::replay::{ReplayError, ReplayStats, replay_bounded};
use restart_watcher_test_support::pods;
use serde_json::json;

/// Cases per property (fixed: CI does the same work on every run).
const CASES: u32 = 256;

const CONTAINERS: [&str; 2] = ["app", "envoy"];

/// What happens to the pod next.
#[derive(Clone, Debug)]
enum Op {
    /// A watch event with these counts (rises, falls, jumps, repeats).
    Observe([u32; 2]),
    /// A relist that includes the pod with these counts.
    Relist([u32; 2]),
    /// A relist without the pod (it was deleted while nobody watched).
    RelistWithout,
    /// The pod is deleted; its final object has these counts.
    Delete([u32; 2]),
    /// A new pod of the same name (a new uid), first seen with these counts.
    Recreate([u32; 2]),
}

fn counts() -> impl Strategy<Value = [u32; 2]> {
    [0u32..6, 0u32..6]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => counts().prop_map(Op::Observe),
        2 => counts().prop_map(Op::Relist),
        1 => Just(Op::RelistWithout),
        1 => counts().prop_map(Op::Delete),
        1 => counts().prop_map(Op::Recreate),
    ]
}

/// The model: per container instance (pod uid, container), the count last accounted for, and
/// each termination's identity. A count that rises by k is k terminations; a count that falls
/// resets (the kubelet lost its state), and the terminations after it are new ones.
struct World {
    uid_seq: u32,
    /// The current pod's uid.
    uid: String,
    /// How many times each container's count was reset (part of a termination's identity).
    epoch: [u32; 2],
    step: u32,
}

impl World {
    /// A uid is never reused: after a deletion, the next pod is a new one.
    fn next_pod(&mut self) {
        self.uid_seq += 1;
        self.uid = World::uid(self.uid_seq);
        self.epoch = [0; 2];
    }

    fn uid(seq: u32) -> String {
        format!("00000000-0000-0000-0000-{seq:012}")
    }

    /// The pod with `counts`; each container's last termination is unique to (uid, container,
    /// reset epoch, count), as a real one is.
    fn pod(&self, counts: [u32; 2]) -> SlimPod {
        let mut pod = pods::pod(&self.uid).named("ns", "p").bare();
        for ((name, n), epoch) in CONTAINERS.iter().zip(counts).zip(self.epoch) {
            let mut c = pods::c(name, n).state(json!({"running": {}}));
            if n > 0 {
                let finished = Timestamp::from_second(1_700_000_000 + i64::from(epoch) * 1000 + i64::from(n)).unwrap();
                c = c.terminated(json!({"exitCode": 1, "reason": "Error", "finishedAt": finished.to_string(),
                    "containerID": format!("containerd://{}-{name}-{epoch}-{n}", self.uid)}));
            }
            pod = pod.app(c);
        }
        pod.slim()
    }
}

/// Runs `ops`; returns the events and, per (uid, container), the total rise the model expects.
fn run_ops(ops: &[Op]) -> (Vec<Record>, BTreeMap<(String, String), u64>) {
    let mut d = Detector::default();
    let mut w = World { uid_seq: 0, uid: World::uid(0), epoch: [0; 2], step: 0 };
    // What the detector should have accounted for: None = not seen since creation (baseline next).
    let mut known: Option<[u32; 2]> = None;
    let mut expected: BTreeMap<(String, String), u64> = BTreeMap::new();
    let mut events = Vec::new();
    let now = Timestamp::from_second(1_800_000_000).unwrap();
    for op in ops {
        w.step += 1;
        let mut observe = |w: &mut World, known: &mut Option<[u32; 2]>, c: [u32; 2]| {
            if let Some(prev) = known {
                for i in 0..2 {
                    if c[i] < prev[i] {
                        w.epoch[i] += 1;
                    }
                    let rise = u64::from(c[i].saturating_sub(prev[i]));
                    *expected.entry((w.uid.clone(), CONTAINERS[i].to_owned())).or_default() += rise;
                }
            }
            *known = Some(c);
        };
        match op {
            Op::Observe(c) => {
                observe(&mut w, &mut known, *c);
                events.extend(d.apply(&w.pod(*c), now));
            }
            Op::Relist(c) => {
                observe(&mut w, &mut known, *c);
                d.begin_relist();
                events.extend(d.apply(&w.pod(*c), now));
                d.end_relist();
            }
            Op::RelistWithout => {
                d.begin_relist();
                d.end_relist();
                // Missing from a complete list: the pod is gone; what comes next is a new pod.
                w.next_pod();
                known = None;
            }
            Op::Delete(c) => {
                observe(&mut w, &mut known, *c);
                events.extend(d.delete(&w.pod(*c), now));
                w.next_pod();
                known = None;
            }
            Op::Recreate(c) => {
                w.next_pod();
                known = None;
                observe(&mut w, &mut known, *c);
                events.extend(d.apply(&w.pod(*c), now));
            }
        }
    }
    (events, expected)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: CASES, ..ProptestConfig::default() })]

    #[test]
    fn reported_restarts_plus_missed_equal_the_total_rise_per_instance(ops in prop::collection::vec(op(), 1..40)) {
        let (events, expected) = run_ops(&ops);
        let mut got: BTreeMap<(String, String), u64> = BTreeMap::new();
        for e in &events {
            *got.entry((e.pod.uid.clone(), e.container.name.clone())).or_default() += 1 + u64::from(e.missed);
        }
        let expected: BTreeMap<_, _> = expected.into_iter().filter(|(_, n)| *n > 0).collect();
        prop_assert_eq!(got, expected);
    }

    #[test]
    fn nothing_is_reported_twice_and_restart_ids_are_unique_per_termination(ops in prop::collection::vec(op(), 1..40)) {
        let (events, _) = run_ops(&ops);
        let mut ids = HashSet::new();
        let mut terminations = HashSet::new();
        for e in &events {
            prop_assert!(ids.insert(e.restart_id()), "restart id reported twice: {:?}", e.terminated);
            let t = e.terminated.as_ref().expect("every rise shows its termination");
            prop_assert!(terminations.insert((t.container_id.clone(), t.finished_at)), "termination reported twice");
        }
        let spans: HashSet<_> = events.iter().map(|e| e.span_id()).collect();
        prop_assert_eq!(spans.len(), events.len());
    }

    #[test]
    fn relisting_the_same_state_reports_nothing(ops in prop::collection::vec(op(), 1..30), again in 1usize..4) {
        let mut with_relists = ops.clone();
        // After every op that leaves the pod alive, relist exactly the state it left.
        if let Some(last) = ops.iter().rev().find_map(|o| match o {
            Op::Observe(c) | Op::Relist(c) | Op::Recreate(c) => Some(*c),
            _ => None,
        }) && matches!(ops.last(), Some(Op::Observe(_) | Op::Relist(_) | Op::Recreate(_))) {
            with_relists.extend(std::iter::repeat_n(Op::Relist(last), again));
        }
        let (base, _) = run_ops(&ops);
        let (relisted, _) = run_ops(&with_relists);
        prop_assert_eq!(base.len(), relisted.len());
    }
}

/// The fixture's bytes and, for each top-level value, where it ends.
fn fixture() -> (Vec<u8>, Vec<usize>) {
    let data = std::fs::read("tests/fixtures/real-apiserver-watch.json").unwrap();
    let mut ends = Vec::new();
    let mut values = serde_json::Deserializer::from_slice(&data).into_iter::<&serde_json::value::RawValue>();
    while let Some(v) = values.next() {
        v.unwrap();
        ends.push(values.byte_offset());
    }
    (data, ends)
}

/// (restart id, count) of every restart replay emits from `input`, and how it ended.
fn replay_ids(input: &[u8], max_value_bytes: usize) -> (Vec<(String, u32)>, Result<(), ReplayError>) {
    let mut got = Vec::new();
    let r = replay_bounded(
        input,
        "prop",
        max_value_bytes,
        &mut Detector::default(),
        || Timestamp::from_second(1_800_000_000).unwrap(),
        |e| {
            got.push((e.restart_id(), e.restart_count));
            true
        },
        &mut ReplayStats::default(),
    );
    (got, r)
}

#[derive(Clone, Debug)]
enum Corruption {
    Flip(usize, u8),
    Truncate(usize),
    Insert(usize, Vec<u8>),
    Delete(usize),
}

fn corruption(len: usize) -> impl Strategy<Value = Corruption> {
    prop_oneof![
        (0..len, any::<u8>()).prop_map(|(p, b)| Corruption::Flip(p, b)),
        (0..len).prop_map(Corruption::Truncate),
        (0..len, prop::collection::vec(any::<u8>(), 1..16)).prop_map(|(p, b)| Corruption::Insert(p, b)),
        (0..len).prop_map(Corruption::Delete),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: CASES, ..ProptestConfig::default() })]

    #[test]
    fn any_corruption_keeps_every_restart_before_it_and_never_panics(c in corruption(75_000)) {
        let (data, ends) = fixture();
        let mut bad = data.clone();
        let at = match c {
            Corruption::Flip(p, b) => { let p = p % data.len(); bad[p] = b; p }
            Corruption::Truncate(p) => { let p = p % data.len(); bad.truncate(p); p }
            Corruption::Insert(p, ref bytes) => { let p = p % data.len(); bad.splice(p..p, bytes.iter().copied()); p }
            Corruption::Delete(p) => { let p = p % data.len(); bad.remove(p); p }
        };
        // The values wholly before the corruption are unchanged: their restarts must come out.
        let intact = ends.iter().filter(|e| **e <= at).count();
        let before = &data[..ends.get(intact.wrapping_sub(1)).copied().unwrap_or(0)];
        let (want, _) = replay_ids(before, 1 << 20);
        // The largest fixture value is far below 1 MiB: a corruption that leaves a value open can
        // only end in an error (EOF or too large), never in unbounded buffering.
        let (got, result) = replay_ids(&bad, 1 << 20);
        prop_assert!(got.len() >= want.len() && got[..want.len()] == want[..], "lost restarts before byte {}: {:?} vs {:?} ({:?})", at, got, want, result);
        if let Err(e) = result {
            prop_assert!(matches!(e, ReplayError::Malformed { .. } | ReplayError::ValueTooLarge { .. }), "{e}");
        }
    }
}
