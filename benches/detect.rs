//! Decode + detect throughput and retained memory, against full `k8s_openapi` Pod decoding.
//!
//! Run: `cargo bench --bench detect` (env `BENCH_PODS`, default 10,000 pods x 10 updates = 100,000
//! updates; one update in 50 is a restart, the rest status noise, as in a live watch). A second
//! stream of first sightings only (every update is a new pod: an initial list or relist, where
//! the full slim decode always runs) is measured too: the worst case. The stream is synthetic but shaped as a real API server writes Pods: the template is a
//! Pod from the recording in tests/fixtures (managedFields, last-applied annotation, two containers),
//! padded to ~4 KB. One core: everything runs on this thread.
//!
//! Each figure is the median of 3 runs. Figures printed:
//! - updates/s through `replay::replay` (scan, slim decode, detect) vs the same bytes decoded into
//!   `WatchEvent<k8s_openapi Pod>` (decode only, no detection: the baseline's lower bound);
//! - bytes retained by the detector per tracked container vs a cache of full Pods (what a kube
//!   reflector keeps), measured with a counting global allocator;
//! - the live path's CPU per event (kube-rs decodes each line into `WatchEvent<SlimPod>`, then the
//!   detector applies it) against the replay path's (probe first, slim decode only where needed).

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::HashMap;
use std::hint::black_box;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Instant;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::WatchEvent;
use restart_watcher::detector::{Detector, KindFilter};
use restart_watcher::pod::SlimPod;
use restart_watcher::replay::{ReplayStats, replay};
use restart_watcher_test_support::pods;
use serde_json::{Value, json};

struct Counting;
static LIVE_BYTES: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE_BYTES.fetch_add(l.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE_BYTES.fetch_sub(l.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        LIVE_BYTES.fetch_add(new as isize - l.size() as isize, Ordering::Relaxed);
        unsafe { System.realloc(p, l, new) }
    }
}

#[global_allocator]
static A: Counting = Counting;

fn live() -> isize {
    LIVE_BYTES.load(Ordering::Relaxed)
}

const UPDATES_PER_POD: usize = 10;
/// One update in this many raises a restart count.
const RESTART_EVERY_UPDATES: usize = 50;

/// Builds the stream: for each pod an ADDED then MODIFIED updates (readiness and resourceVersion
/// change); one update in `RESTART_EVERY_UPDATES` a restart. `updates_per_pod = 1`: first sightings only.
fn build_stream(pods: usize, updates_per_pod: usize) -> (Vec<u8>, usize) {
    let fixture = std::fs::read_to_string("tests/fixtures/real-apiserver-watch.json").expect("run from the crate root");
    let template: Value = serde_json::Deserializer::from_str(&fixture)
        .into_iter::<Value>()
        .map(|v| v.unwrap())
        .find(|v| {
            v["type"] == "MODIFIED" && v["object"]["status"]["containerStatuses"].as_array().map_or(0, |a| a.len()) == 2
        })
        .unwrap()["object"]
        .clone();
    let mut out = Vec::with_capacity(pods * updates_per_pod * 4_900);
    let mut sizes = 0usize;
    let mut n = 0usize;
    for p in 0..pods {
        let mut pod = template.clone();
        let uid = format!("{:08x}-1206-49a7-8747-{:012x}", p, p * 31);
        pod["metadata"]["uid"] = uid.into();
        pod["metadata"]["name"] = format!("checkout-6b7f9c8d5-{p:06}").into();
        pod["metadata"]["labels"]["team"] = "payments-platform".into();
        pod["metadata"]["labels"]["app.kubernetes.io/version"] = "1.8.2".into();
        let mut restarts = 0;
        for u in 0..updates_per_pod {
            n += 1;
            pod["status"]["containerStatuses"][1]["ready"] = u.is_multiple_of(2).into();
            if u > 0 && n.is_multiple_of(RESTART_EVERY_UPDATES) {
                restarts += 1;
            }
            pod["metadata"]["resourceVersion"] = (1000 + n).to_string().into();
            pod["status"]["containerStatuses"][0]["restartCount"] = restarts.into();
            // As the API server writes it: the type first (a decoder of the adjacently tagged
            // `WatchEvent` then reads the object without buffering it).
            let start = out.len();
            let kind = if u == 0 { "ADDED" } else { "MODIFIED" };
            out.extend_from_slice(format!("{{\"type\":\"{kind}\",\"object\":").as_bytes());
            serde_json::to_writer(&mut out, &pod).unwrap();
            out.extend_from_slice(b"}\n");
            sizes += out.len() - start;
        }
    }
    (out, sizes / (pods * updates_per_pod))
}

struct Measured {
    updates: usize,
    full_rate: f64,
    slim_rate: f64,
    full_bytes_per_container: f64,
    slim_bytes_per_container: f64,
    /// The live path: kube-rs's decode of each event into `WatchEvent<SlimPod>`, then detection.
    live_rate: f64,
    restarts: u64,
}

fn measure(stream: &[u8], updates: usize, skip_baseline: bool) -> Measured {
    // Baseline: full Pods, decode only, kept in a cache as a reflector would.
    let before = live();
    let t = Instant::now();
    let mut cache: HashMap<String, Pod> = HashMap::new();
    if !skip_baseline {
        for ev in serde_json::Deserializer::from_slice(stream).into_iter::<WatchEvent<Pod>>() {
            if let WatchEvent::Added(p) | WatchEvent::Modified(p) = ev.unwrap() {
                cache.insert(p.metadata.uid.clone().unwrap_or_default(), p);
            }
        }
    }
    let full_secs = t.elapsed().as_secs_f64();
    let full_retained = live() - before;
    let full_containers: usize = cache
        .values()
        .map(|p| p.status.as_ref().and_then(|s| s.container_statuses.as_ref()).map_or(0, |c| c.len()))
        .sum();
    black_box(&cache);
    drop(cache);

    // Ours: the replay path (probe, slim decode where needed, detect); only the detector's state is kept.
    let before = live();
    let t = Instant::now();
    let mut detector = Detector::new(KindFilter::default());
    let mut stats = ReplayStats::default();
    let mut restarts = 0u64;
    let now = jiff::Timestamp::now();
    replay(
        stream,
        "bench",
        &mut detector,
        || now,
        |ev| {
            restarts += 1;
            black_box(ev);
            true
        },
        &mut stats,
    )
    .unwrap();
    let slim_secs = t.elapsed().as_secs_f64();
    let slim_retained = live() - before;
    assert_eq!(stats.pod_observations as usize, updates);
    drop(detector);

    // The live path: what kube's watcher does with each line (serde into `WatchEvent<SlimPod>`),
    // then the detector on the slim Pod (no probe: the watcher hands over decoded objects).
    let t = Instant::now();
    let mut detector = Detector::new(KindFilter::default());
    let mut live_restarts = 0u64;
    for ev in serde_json::Deserializer::from_slice(stream).into_iter::<kube::core::WatchEvent<SlimPod>>() {
        if let kube::core::WatchEvent::Added(p) | kube::core::WatchEvent::Modified(p) = ev.unwrap() {
            live_restarts += detector.apply(&p, now).len() as u64;
        }
    }
    let live_secs = t.elapsed().as_secs_f64();
    assert_eq!(live_restarts, restarts, "both paths detect the same restarts");
    Measured {
        updates,
        full_rate: updates as f64 / full_secs,
        slim_rate: updates as f64 / slim_secs,
        full_bytes_per_container: full_retained as f64 / full_containers.max(1) as f64,
        slim_bytes_per_container: slim_retained as f64 / detector.containers() as f64,
        live_rate: updates as f64 / live_secs,
        restarts,
    }
}

/// Runs per measurement; the median of each figure is reported (single runs vary with the
/// allocator's and the page cache's state).
const RUNS: usize = 3;

fn median_of(runs: usize, mut f: impl FnMut() -> Measured) -> Measured {
    let all: Vec<Measured> = (0..runs).map(|_| f()).collect();
    let median = |mut v: Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    Measured {
        updates: all[0].updates,
        full_rate: median(all.iter().map(|m| m.full_rate).collect()),
        slim_rate: median(all.iter().map(|m| m.slim_rate).collect()),
        full_bytes_per_container: median(all.iter().map(|m| m.full_bytes_per_container).collect()),
        slim_bytes_per_container: median(all.iter().map(|m| m.slim_bytes_per_container).collect()),
        live_rate: median(all.iter().map(|m| m.live_rate).collect()),
        restarts: all[0].restarts,
    }
}

fn main() {
    let pods: usize = std::env::var("BENCH_PODS").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000);
    // BENCH_SKIP_BASELINE=1 measures only ours (for profiling).
    let skip_baseline = std::env::var("BENCH_SKIP_BASELINE").is_ok();
    let (stream, avg_bytes) = build_stream(pods, UPDATES_PER_POD);
    let updates = pods * UPDATES_PER_POD;
    println!(
        "watch stream: {updates} updates of {pods} pods, {avg_bytes} bytes per update on average, 1 in {RESTART_EVERY_UPDATES} a restart"
    );
    let watch = median_of(RUNS, || measure(&stream, updates, skip_baseline));
    drop(stream);
    let (list, list_bytes) = build_stream(updates, 1);
    println!("first-sighting stream: {updates} new pods, {list_bytes} bytes each");
    let first = median_of(RUNS, || measure(&list, updates, skip_baseline));
    println!("restarts detected in the watch stream: {}", watch.restarts);
    println!();
    println!("| measure (one core) | full k8s_openapi Pod (baseline) | restart-watcher | ratio |");
    println!("|---|---|---|---|");
    for (name, m) in
        [("watch updates/s (mostly status noise)", &watch), ("first sightings/s (initial list, relist)", &first)]
    {
        println!("| {name} | {:.0} | {:.0} | {:.1}x faster |", m.full_rate, m.slim_rate, m.slim_rate / m.full_rate);
    }
    println!();
    println!("| path (one core) | updates/s | µs per event | slower than the replay path |");
    println!("|---|---|---|---|");
    for (name, m) in [("watch updates", &watch), ("first sightings", &first)] {
        println!(
            "| replay: probe, slim decode where needed, detect ({name}) | {:.0} | {:.2} | 1.0x |",
            m.slim_rate,
            1e6 / m.slim_rate
        );
        println!(
            "| live: kube's WatchEvent<SlimPod> decode, detect ({name}) | {:.0} | {:.2} | {:.1}x |",
            m.live_rate,
            1e6 / m.live_rate,
            m.slim_rate / m.live_rate
        );
    }
    println!();
    println!(
        "| retained bytes per tracked container ({} pods, 2 containers each) | {:.0} | {:.0} | {:.0}x less |",
        first.updates,
        first.full_bytes_per_container,
        first.slim_bytes_per_container,
        first.full_bytes_per_container / first.slim_bytes_per_container
    );
    piped_list(&list);
    many_containers();
}

/// A pod with `containers` containers: its ADDED (the baseline), `quiet` updates that change
/// nothing (the fast path), and `restarts` updates that each raise one container's count (the full
/// path), as a watch stream.
fn wide_pod_stream(containers: usize, quiet: usize, restarts: usize) -> Vec<u8> {
    let event = |kind: &str, raised: usize| {
        let pod = pods::pod("0a1b2c3d-0000-0000-0000-000000000001").named("ns", "wide").bare();
        let mut pod = pod.status(serde_json::json!({"phase": "Running"}));
        for i in 0..containers {
            let c = pods::c(&format!("c-{i}"), u32::from(i < raised)).running_since("2026-11-20T10:00:00Z");
            let c = c.field("image", "registry.example.com/app:1.0").field("imageID", "").field("lastState", json!({}));
            pod = pod.app(c);
        }
        pod.event(kind).to_string()
    };
    let mut lines = vec![event("ADDED", 0)];
    lines.extend((0..quiet).map(|_| event("MODIFIED", 0)));
    lines.extend((1..=restarts).map(|r| event("MODIFIED", r)));
    lines.join("\n").into_bytes()
}

/// Updates of pods with many containers cost time linear in their containers: the time per update
/// and container at 10,000 containers against 2,500 (1.0x when linear; 4x when quadratic).
fn many_containers() {
    const QUIET: usize = 20;
    const RESTARTS: usize = 20;
    let per_container_update = |containers: usize| {
        let stream = wide_pod_stream(containers, QUIET, RESTARTS);
        let mut runs: Vec<f64> = (0..RUNS)
            .map(|_| {
                let mut d = Detector::new(KindFilter::default());
                let mut stats = ReplayStats::default();
                let t = Instant::now();
                replay(stream.as_slice(), "bench", &mut d, jiff::Timestamp::now, |_| true, &mut stats).expect("replay");
                black_box(stats);
                t.elapsed().as_secs_f64()
            })
            .collect();
        runs.sort_by(|a, b| a.total_cmp(b));
        runs[runs.len() / 2] / ((1 + QUIET + RESTARTS) * containers) as f64
    };
    let (small, large) = (per_container_update(2_500), per_container_update(10_000));
    println!();
    println!(
        "| one pod, {QUIET} quiet updates and {RESTARTS} restarts | 2,500 containers | 10,000 containers | ratio |"
    );
    println!("|---|---|---|---|");
    println!("| µs per update and container | {:.3} | {:.3} | {:.2}x |", small * 1e6, large * 1e6, large / small);
}

/// A pipe's reads: at most `chunk` bytes each.
struct Pipe<'a> {
    data: &'a [u8],
    chunk: usize,
}

impl std::io::Read for Pipe<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(self.chunk).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

/// One big PodList (`kubectl get pods -A -o json`) read as a pipe delivers it (64 KiB reads)
/// against the same bytes in one read: the time must not grow with the number of reads.
fn piped_list(first_sightings: &[u8]) {
    let items: Vec<Value> = serde_json::Deserializer::from_slice(first_sightings)
        .into_iter::<Value>()
        .map(|v| v.expect("bench stream").get("object").cloned().expect("watch event"))
        .collect();
    let list = serde_json::to_vec(&serde_json::json!({"kind": "PodList", "apiVersion": "v1", "items": items}))
        .expect("encode the list");
    let time = |chunk: usize| {
        let mut runs: Vec<f64> = (0..RUNS)
            .map(|_| {
                let mut d = Detector::new(KindFilter::default());
                let mut stats = ReplayStats::default();
                let t = Instant::now();
                let input = Pipe { data: &list, chunk };
                replay(input, "bench", &mut d, jiff::Timestamp::now, |_| true, &mut stats).expect("replay");
                black_box(stats);
                t.elapsed().as_secs_f64()
            })
            .collect();
        runs.sort_by(|a, b| a.total_cmp(b));
        runs[runs.len() / 2]
    };
    let (whole, piped) = (time(list.len()), time(64 * 1024));
    println!();
    println!("| one PodList of {:.1} MB | in one read | piped, 64 KiB reads | ratio |", list.len() as f64 / 1e6);
    println!("|---|---|---|---|");
    println!("| replay time (s) | {whole:.3} | {piped:.3} | {:.2}x |", piped / whole);
}
