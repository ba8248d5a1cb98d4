//! Recordings: a recorded watch stream read through the same detector as a live watch.
//!
//! Input is what `kubectl get pods -A --watch --output-watch-events -o json` prints (watch events
//! `{"type": ..., "object": Pod}`, one after another, pretty-printed or not), plain Pod objects
//! (`kubectl get pods -w -o json`), and `PodList`/`List` objects (`kubectl get pods -o json`), in
//! any mix. A list is a complete snapshot of the recorded scope, exactly as a relist is for a live
//! watch: pods missing from it are treated as deleted.
//!
//! Bad input: a value that is not valid JSON stops the replay with an error naming its byte offset,
//! line and column and what the parser expected; everything detected before it has already been
//! handed on. A valid value that is not a Pod (or cannot be read as one) is skipped with a warning
//! and counted. BOOKMARK events are ignored; ERROR events (a `Status`) are logged and counted.

use std::io::Read;

use jiff::Timestamp;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::detector::Detector;
use crate::pod::{PodProbe, SlimPod, SlimPodSpec, SlimPodStatus};
use crate::record::Record;

/// Errors that stop a replay.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The stream holds something that is not JSON (or ends inside a value).
    #[error(
        "{source_name}: malformed JSON value at byte {byte_offset} (line {line}, column {column}): {detail}; \
         expected a stream of JSON objects (watch events, Pods or PodLists), as `kubectl get pods -A --watch --output-watch-events -o json` prints"
    )]
    Malformed { source_name: String, byte_offset: usize, line: usize, column: usize, detail: String },
    /// One value is larger than the limit (input that never closes a value lands here too).
    #[error(
        "{source_name}: the JSON value starting at byte {byte_offset} (line {line}, column {column}) is larger than \
         {max_value_bytes} bytes; if it is a real PodList, raise --max-value-bytes, else check that the input is JSON"
    )]
    ValueTooLarge { source_name: String, byte_offset: usize, line: usize, column: usize, max_value_bytes: usize },
    /// Reading the input failed (the cause is the error's source).
    #[error("{source_name}: cannot read the input")]
    Read {
        source_name: String,
        #[source]
        source: std::io::Error,
    },
    /// The consumer of records went away (the export task ended).
    #[error("the export pipeline closed before the replay ended")]
    SinkClosed,
}

/// What a replay saw.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReplayStats {
    /// Top-level JSON values read.
    pub values: u64,
    /// Pod observations fed to the detector (watch events, plain Pods, list items).
    pub pod_observations: u64,
    /// Lists (snapshots) read.
    pub lists: u64,
    /// Values or items skipped because they are not Pods (or cannot be read as one).
    pub skipped_not_pod: u64,
    /// Pods skipped because they have no `metadata.uid`.
    pub pods_without_uid: u64,
    /// ERROR watch events (Status objects).
    pub error_events: u64,
    /// BOOKMARK watch events.
    pub bookmarks: u64,
    /// Kubernetes Events (watch events of kind `Event`), handed to the caller's `kube_event`.
    pub kube_events: u64,
    /// Records detected.
    pub restarts: u64,
    /// The recording's time: the latest time its objects gave.
    pub clock: RecordingClock,
}

/// Everything a watch stream's value can be: a watch event, a Pod, a list, or a Status.
#[derive(Deserialize)]
struct Envelope {
    #[serde(rename = "type", default)]
    event_type: Option<String>,
    #[serde(default)]
    object: Option<Box<Envelope>>,
    #[serde(default)]
    kind: Option<String>,
    #[serde(default, deserialize_with = "crate::pod::deserialize_slim_metadata")]
    metadata: crate::pod::SlimMeta,
    #[serde(default)]
    spec: Option<SlimPodSpec>,
    #[serde(default, deserialize_with = "crate::pod::deserialize_lenient_status")]
    status: SlimPodStatus,
    #[serde(default)]
    items: Option<Vec<Envelope>>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    code: Option<i64>,
}

/// The probe of a watch event: its type and the object's counts, borrowed from the buffer.
#[derive(Deserialize)]
struct ProbeEnvelope<'a> {
    #[serde(rename = "type", default, borrow)]
    event_type: Option<std::borrow::Cow<'a, str>>,
    #[serde(default, borrow)]
    object: Option<PodProbe<'a>>,
}

impl Envelope {
    fn is_pod(&self, default_kind_pod: bool) -> bool {
        match self.kind.as_deref() {
            Some("Pod") => true,
            None => default_kind_pod && self.metadata.meta.uid.is_some(),
            _ => false,
        }
    }

    fn into_pod(self) -> SlimPod {
        SlimPod { metadata: self.metadata, spec: self.spec.unwrap_or_default(), status: self.status }
    }

    fn describe(&self) -> String {
        let kind = self.kind.as_deref().unwrap_or("object without kind");
        match (&self.metadata.meta.namespace, &self.metadata.meta.name) {
            (Some(ns), Some(n)) => format!("{kind} {ns}/{n}"),
            (None, Some(n)) => format!("{kind} {n}"),
            _ => kind.to_owned(),
        }
    }
}

/// Bytes read from the input at a time.
pub(crate) const READ_CHUNK_BYTES: usize = 1 << 20;

/// Default largest single JSON value (a watch event, a Pod, a whole PodList), in bytes: a
/// `kubectl get pods -A -o json` of about 100k pods. Set with `replay --max-value-bytes`.
pub(crate) const DEFAULT_MAX_VALUE_BYTES: usize = 1 << 30;

/// The UTF-8 byte-order mark, skipped (with a warning) at the start of the input.
const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// Feeds a recorded stream through `detector`, handing each restart to `emit` as soon as it is
/// detected, and counting what it saw in `stats`. Observations are dated by the recording's own
/// times ([`RecordingClock`]); `now` only until the recording has given one. Stops at the
/// first malformed JSON value, after everything before it was emitted; `emit` returning `false`
/// stops the replay (`SinkClosed`). One value may be at most [`DEFAULT_MAX_VALUE_BYTES`].
pub fn replay<R: Read>(
    input: R,
    source_name: &str,
    detector: &mut Detector,
    now: impl FnMut() -> Timestamp,
    emit: impl FnMut(Record) -> bool,
    stats: &mut ReplayStats,
) -> Result<(), ReplayError> {
    replay_bounded(input, source_name, DEFAULT_MAX_VALUE_BYTES, detector, now, emit, stats)
}

/// [`replay`] with the largest single value set to `max_value_bytes`.
///
/// The input is read in chunks and complete values are decoded straight from the buffer (no copy
/// per value), so a pipe is processed as it arrives. A value still incomplete after a parse is
/// parsed again only once the bytes buffered for it have doubled (or the input ended): every byte
/// is parsed a bounded number of times, so the time is linear in the input however the writer
/// splits it. Memory is bounded by the largest value: input that cannot start a JSON value fails
/// on its first bytes, and a value larger than `max_value_bytes` fails as soon as it is.
pub fn replay_bounded<R: Read>(
    input: R,
    source_name: &str,
    max_value_bytes: usize,
    detector: &mut Detector,
    now: impl FnMut() -> Timestamp,
    emit: impl FnMut(Record) -> bool,
    stats: &mut ReplayStats,
) -> Result<(), ReplayError> {
    replay_with(input, source_name, max_value_bytes, detector, now, emit, |_| {}, stats, |_| true)
}

/// [`replay_bounded`], handing each Kubernetes Event of the recording (a watch event whose object's
/// kind is `Event`, as `kubectl get events --watch --output-watch-events -o json` records them) to
/// `kube_event` as its JSON text, and calling `before_read` with the counts so far before each read
/// of the input (everything read before has been handled by then): a caller whose reader may stay
/// blocked on a pipe keeps the counts it can report. `before_read` returning `false` ends the
/// replay there (interrupted), with `Ok`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn replay_with<R: Read>(
    mut input: R,
    source_name: &str,
    max_value_bytes: usize,
    detector: &mut Detector,
    mut now: impl FnMut() -> Timestamp,
    mut emit: impl FnMut(Record) -> bool,
    mut kube_event: impl FnMut(&[u8]),
    stats: &mut ReplayStats,
    mut before_read: impl FnMut(&ReplayStats) -> bool,
) -> Result<(), ReplayError> {
    // `buf[..len]` holds unparsed input; `buf[len..]` is room to read into (zeroed once, not per read).
    let mut buf: Vec<u8> = vec![0; READ_CHUNK_BYTES];
    let mut len = 0;
    let mut pos = Position::default();
    // Bytes of `buf` known to be valid UTF-8, and the buffered length at which to parse next.
    let (mut utf8_ok, mut parse_at) = (0, 0);
    let mut at_start = true;
    let mut sink = |envelope: Envelope, offset: usize, detector: &mut Detector, stats: &mut ReplayStats| {
        handle(envelope, offset, detector, &mut now, &mut emit, stats)
    };
    loop {
        if buf.len() - len < READ_CHUNK_BYTES / 2 {
            buf.resize(buf.len() * 2, 0);
        }
        if !before_read(stats) {
            return Ok(());
        }
        let n = read_some(&mut input, &mut buf[len..], source_name)?;
        let eof = n == 0;
        len += n;
        if at_start && (len >= UTF8_BOM.len() || eof) {
            at_start = false;
            if buf[..len].starts_with(UTF8_BOM) {
                tracing::warn!(
                    source = source_name,
                    "The input starts with a UTF-8 byte-order mark (BOM); skipped it."
                );
                pos.advance(UTF8_BOM);
                buf.copy_within(UTF8_BOM.len()..len, 0);
                len -= UTF8_BOM.len();
            }
        }
        if at_start || (!eof && len < parse_at) {
            continue;
        }
        // JSON text is UTF-8: check the new bytes (a character cut by the read waits for the rest).
        let (valid, bad) = match std::str::from_utf8(&buf[utf8_ok..len]) {
            Ok(_) => (len, false),
            Err(e) => (utf8_ok + e.valid_up_to(), e.error_len().is_some() || eof),
        };
        utf8_ok = valid;
        let consumed =
            decode_values(&buf[..valid], eof && !bad, pos, source_name, stats, detector, &mut sink, &mut kube_event)?;
        if bad {
            let detail = "invalid UTF-8 (JSON text must be UTF-8)".to_owned();
            return Err(malformed_at(&buf[..len], valid, pos, source_name, detail));
        }
        if eof {
            return Ok(());
        }
        pos.advance(&buf[..consumed]);
        buf.copy_within(consumed..len, 0);
        len -= consumed;
        utf8_ok -= consumed;
        // What is left is the start of one value (and maybe whitespace).
        let pending = len - leading_whitespace(&buf[..len]);
        if pending > max_value_bytes {
            let (byte_offset, line, column) = place(&buf, len - pending, pos);
            let source_name = source_name.to_owned();
            return Err(ReplayError::ValueTooLarge { source_name, byte_offset, line, column, max_value_bytes });
        }
        parse_at = if pending == 0 { 0 } else { len.saturating_mul(2) };
    }
}

/// One read of the input into `buf` (retried when interrupted): the bytes read, 0 at its end.
fn read_some(input: &mut impl Read, buf: &mut [u8], source_name: &str) -> Result<usize, ReplayError> {
    loop {
        match input.read(buf) {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(source) => return Err(ReplayError::Read { source_name: source_name.to_owned(), source }),
        }
    }
}

/// Where the start of the buffer is in the whole stream: byte offset, newlines before it, bytes
/// since the last newline.
#[derive(Clone, Copy, Debug, Default)]
struct Position {
    byte: usize,
    line: usize,
    column: usize,
}

impl Position {
    fn advance(&mut self, bytes: &[u8]) {
        self.byte += bytes.len();
        // Only error messages use lines and columns, but every byte passes here: SIMD scans.
        match memchr::memrchr(b'\n', bytes) {
            Some(last) => {
                self.line += memchr::memchr_iter(b'\n', bytes).count();
                self.column = bytes.len() - last - 1;
            }
            None => self.column += bytes.len(),
        }
    }

    fn after(mut self, bytes: &[u8]) -> Position {
        self.advance(bytes);
        self
    }
}

/// Decodes every complete value in `buf`, handing each to `sink` with its absolute byte offset.
/// Returns how many bytes were consumed (the rest is an incomplete value, unless `eof`).
///
/// Each value is first decoded as a [`ProbeEnvelope`] (type, uid, counts; no allocation). A
/// MODIFIED/ADDED event of a known pod whose counts did not change stops there, and so does the
/// first sighting of a pod when catch-up is off (it only sets a baseline); anything else is decoded
/// again, fully, from the same bytes. A watch event of a Kubernetes Event goes to `kube_event`. A
/// value that is valid JSON but cannot be read (another shape, a number out of range, a field of
/// the wrong type) is skipped and counted.
#[allow(clippy::too_many_arguments)]
fn decode_values(
    buf: &[u8],
    eof: bool,
    base: Position,
    source_name: &str,
    stats: &mut ReplayStats,
    detector: &mut Detector,
    sink: &mut impl FnMut(Envelope, usize, &mut Detector, &mut ReplayStats) -> Result<(), ReplayError>,
    kube_event: &mut impl FnMut(&[u8]),
) -> Result<usize, ReplayError> {
    let mut pos = 0;
    'restart: loop {
        let mut values = serde_json::Deserializer::from_slice(&buf[pos..]).into_iter::<ProbeEnvelope<'_>>();
        loop {
            let start = pos + values.byte_offset();
            let (value, end) = match values.next() {
                None => return Ok(buf.len()),
                Some(Ok(probe)) => {
                    let end = pos + values.byte_offset();
                    if probe.object.as_ref().is_some_and(|o| o.kind.as_deref() == Some("Event")) {
                        stats.values += 1;
                        stats.kube_events += 1;
                        kube_event(&buf[start..end]);
                        continue;
                    }
                    let quiet_update = matches!(probe.event_type.as_deref(), Some("ADDED") | Some("MODIFIED"))
                        && probe.object.as_ref().is_some_and(|o| o.kind.as_deref().is_none_or(|k| k == "Pod"));
                    if quiet_update
                        && probe.object.as_ref().is_some_and(|o| detector.unchanged(o) || detector.baseline_new(o))
                    {
                        stats.values += 1;
                        stats.pod_observations += 1;
                        continue;
                    }
                    (&buf[start..end], end)
                }
                Some(Err(e)) if e.is_eof() && !eof => return Ok(start),
                Some(Err(_)) => {
                    // Not a probe's shape, or unreadable: is it valid JSON at all? Find its extent.
                    let mut raw = serde_json::Deserializer::from_slice(&buf[start..]).into_iter::<&RawValue>();
                    match raw.next() {
                        Some(Ok(_)) => (&buf[start..start + raw.byte_offset()], start + raw.byte_offset()),
                        Some(Err(e)) if e.is_eof() && !eof => return Ok(start),
                        Some(Err(e)) => return Err(malformed(&e, buf, start, base, source_name)),
                        None => return Ok(buf.len()),
                    }
                }
            };
            stats.values += 1;
            let offset = base.byte + start + leading_whitespace(&buf[start..]);
            match serde_json::from_slice::<Envelope>(value) {
                Ok(envelope) => sink(envelope, offset, detector, stats)?,
                Err(e) => {
                    stats.skipped_not_pod += 1;
                    tracing::warn!(
                        byte_offset = offset,
                        error = describe_json_error(&e),
                        "Skipped a JSON value that cannot be read as a Pod, watch event or list."
                    );
                }
            }
            if end != pos + values.byte_offset() {
                pos = end;
                continue 'restart;
            }
        }
    }
}

fn leading_whitespace(bytes: &[u8]) -> usize {
    bytes.iter().take_while(|b| b.is_ascii_whitespace()).count()
}

/// A syntax error, placed in the whole stream. `e`'s line and column count from `buf[origin..]`.
/// A value the stream ends inside of is placed at its start; any other error at the byte the
/// parser stopped at. The byte offset, line and column always name the same byte.
fn malformed(e: &serde_json::Error, buf: &[u8], origin: usize, base: Position, source_name: &str) -> ReplayError {
    let at = if e.is_eof() {
        origin + leading_whitespace(&buf[origin..])
    } else {
        // serde_json's line and column (both from 1) of the byte it stopped at, back to an index.
        let rest = &buf[origin..];
        let line_start = if e.line() <= 1 {
            0
        } else {
            memchr::memchr_iter(b'\n', rest).nth(e.line() - 2).map_or(rest.len(), |i| i + 1)
        };
        origin + (line_start + e.column().saturating_sub(1)).min(rest.len())
    };
    let value_start = origin + leading_whitespace(&buf[origin..]);
    let detail = match buf.get(at) {
        Some(b) if at == value_start && !matches!(b, b'{' | b'[' | b'"' | b'-' | b'0'..=b'9' | b't' | b'f' | b'n') => {
            let found: String = buf[at..]
                .iter()
                .take(16)
                .map(|b| if b.is_ascii_graphic() || *b == b' ' { *b as char } else { '.' })
                .collect();
            format!(
                "found {found:?} where a JSON value must start (table output from `kubectl get` without `-o json`?)"
            )
        }
        _ => describe_json_error(e),
    };
    malformed_at(buf, at, base, source_name, detail)
}

/// Malformed input at `buf[at]`.
fn malformed_at(buf: &[u8], at: usize, base: Position, source_name: &str, detail: String) -> ReplayError {
    let (byte_offset, line, column) = place(buf, at, base);
    ReplayError::Malformed { source_name: source_name.to_owned(), byte_offset, line, column, detail }
}

/// Where `buf[at]` is in the stream: byte offset, line and column (both from 1).
fn place(buf: &[u8], at: usize, base: Position) -> (usize, usize, usize) {
    let p = base.after(&buf[..at]);
    (p.byte, p.line + 1, p.column + 1)
}

/// The time of a recording: the latest time its objects have given so far ([`SlimPod::latest_time`]).
/// A replay dates each observation by it, never by the time of the replay: a recording of
/// `kubectl get -o json` (without `managedFields`) then still gives episodes their duration.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecordingClock {
    latest: Option<Timestamp>,
}

impl RecordingClock {
    /// The latest time the recording has given (`None`: none yet).
    pub fn now(&self) -> Option<Timestamp> {
        self.latest
    }

    /// Moves the clock to `pod`'s latest time if that is later; returns the clock (`None` while no
    /// object has given a time).
    pub fn observe(&mut self, pod: &SlimPod) -> Option<Timestamp> {
        self.latest = self.latest.max(pod.latest_time());
        self.latest
    }
}

/// What a replayed value feeds the detector with; counts what it skips.
struct Sink<'a, N, E> {
    detector: &'a mut Detector,
    now: &'a mut N,
    emit: &'a mut E,
    stats: &'a mut ReplayStats,
    /// Where the value being handled starts in the stream, for warnings.
    offset: usize,
}

impl<N: FnMut() -> Timestamp, E: FnMut(Record) -> bool> Sink<'_, N, E> {
    /// An observation (or the final object of a deletion) through the detector; its restarts out.
    fn observe(&mut self, pod: &crate::pod::SlimPod, deleted: bool) -> Result<(), ReplayError> {
        self.stats.pod_observations += 1;
        if pod.uid().is_none() {
            self.stats.pods_without_uid += 1;
            tracing::warn!(
                byte_offset = self.offset,
                pod = format!("{}/{}", pod.namespace(), pod.name()),
                "Skipped a Pod without metadata.uid: restarts are tracked by uid (a recording from the API server always has one)."
            );
            return Ok(());
        }
        let now = self.stats.clock.observe(pod).unwrap_or_else(|| (self.now)());
        // The pods that had waited past the pending threshold by now (a live run's tick).
        let mut events = self.detector.tick(now);
        events.extend(if deleted { self.detector.delete(pod, now) } else { self.detector.apply(pod, now) });
        for ev in events {
            self.stats.restarts += 1;
            if !(self.emit)(ev) {
                return Err(ReplayError::SinkClosed);
            }
        }
        Ok(())
    }
}

fn handle(
    mut envelope: Envelope,
    offset: usize,
    detector: &mut Detector,
    now: &mut impl FnMut() -> Timestamp,
    emit: &mut impl FnMut(Record) -> bool,
    stats: &mut ReplayStats,
) -> Result<(), ReplayError> {
    let mut sink = Sink { detector, now, emit, stats, offset };
    // A watch event has an object or a watch event type; a Kubernetes Event also has a `type`
    // (Normal, Warning) but is an object with a kind of its own.
    let is_watch_event = envelope.object.is_some()
        || matches!(envelope.event_type.as_deref(), Some("ADDED" | "MODIFIED" | "DELETED" | "BOOKMARK" | "ERROR"));
    if is_watch_event && let Some(event_type) = envelope.event_type.take() {
        return handle_watch_event(&event_type, envelope.object, offset, &mut sink);
    }
    let is_list = matches!(envelope.kind.as_deref(), Some("PodList") | Some("List"))
        || (envelope.kind.is_none() && envelope.items.is_some());
    if is_list {
        sink.stats.lists += 1;
        sink.detector.begin_relist();
        for item in envelope.items.unwrap_or_default() {
            if item.is_pod(true) {
                sink.observe(&item.into_pod(), false)?;
            } else {
                sink.stats.skipped_not_pod += 1;
                tracing::warn!(
                    byte_offset = offset,
                    object = item.describe(),
                    "Skipped a list item that is not a Pod."
                );
            }
        }
        sink.detector.end_relist();
    } else if envelope.is_pod(true) {
        sink.observe(&envelope.into_pod(), false)?;
    } else if envelope.kind.as_deref() == Some("Status") {
        sink.stats.error_events += 1;
        tracing::warn!(
            byte_offset = offset,
            code = envelope.code,
            message = envelope.message.as_deref().unwrap_or(""),
            "The recording holds a Status (an API error)."
        );
    } else {
        sink.stats.skipped_not_pod += 1;
        tracing::warn!(byte_offset = offset, object = envelope.describe(), "Skipped an object that is not a Pod.");
    }
    Ok(())
}

/// A watch event `{"type": ..., "object": ...}`.
fn handle_watch_event<N: FnMut() -> Timestamp, E: FnMut(Record) -> bool>(
    event_type: &str,
    object: Option<Box<Envelope>>,
    offset: usize,
    sink: &mut Sink<'_, N, E>,
) -> Result<(), ReplayError> {
    let Some(object) = object else {
        sink.stats.skipped_not_pod += 1;
        tracing::warn!(byte_offset = offset, event_type, "Skipped a watch event without an object.");
        return Ok(());
    };
    match event_type {
        "BOOKMARK" => sink.stats.bookmarks += 1,
        "ERROR" => {
            sink.stats.error_events += 1;
            tracing::warn!(
                byte_offset = offset,
                code = object.code,
                reason = object.reason.as_deref().unwrap_or(""),
                message = object.message.as_deref().unwrap_or(""),
                "The recorded watch carried an ERROR event (a relist follows in a live watch)."
            );
        }
        "ADDED" | "MODIFIED" | "DELETED" if object.is_pod(true) => {
            sink.observe(&object.into_pod(), event_type == "DELETED")?;
        }
        _ => {
            sink.stats.skipped_not_pod += 1;
            tracing::warn!(
                byte_offset = offset,
                event_type,
                object = object.describe(),
                "Skipped a watch event that is not about a Pod."
            );
        }
    }
    Ok(())
}

fn describe_json_error(e: &serde_json::Error) -> String {
    let msg = e.to_string();
    // serde_json appends " at line L column C"; the caller names the position itself.
    let msg = msg.split(" at line ").next().unwrap_or(&msg).to_owned();
    if e.is_eof() { format!("the stream ends inside a JSON value ({msg}); was the recording cut short?") } else { msg }
}
