//! What the detector remembers per pod, packed: about 41 bytes of map entry per pod, with no
//! allocation of its own for pods of up to [`INLINE_CONTAINERS`] containers.
//!
//! - Pods are keyed by the 128 bits of their UID ([`PodKey`], byte-aligned: no padding).
//! - The container names and kinds of a pod, in the order it first listed them, are its *shape*,
//!   interned and shared by every pod with the same one (every pod of a template): a pod keeps the
//!   shape's number, not the names. Shapes are reference-counted and freed with their last pod, so
//!   they are bounded by the pods tracked.
//! - A pod's per-container state (restart count and flags) is inline for its first
//!   [`INLINE_CONTAINERS`] containers; the rest, for pods with more, sit in a side map.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

pub(crate) use crate::pod::PodKey;
use crate::record::ContainerKind;

/// Containers whose state is kept inside the pod's map entry; more spill into a side map.
pub(crate) const INLINE_CONTAINERS: usize = 3;

/// What the detector remembers of one container, besides its name and kind (in the shape).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Slot {
    pub restart_count: u32,
    /// The detector's per-container bits.
    pub flags: u8,
}

/// One pod: its shape, the relist generation in which it was last seen, its flags, and the slots of
/// its first containers.
#[derive(Debug)]
pub(crate) struct PodState {
    shape: u32,
    pub seen_in: u32,
    counts: [u32; INLINE_CONTAINERS],
    container_flags: [u8; INLINE_CONTAINERS],
    /// The detector's per-pod bits.
    pub flags: u8,
}

// The point of this module: a pod's state is 24 bytes, and its map entry 40.
const _: () = assert!(std::mem::size_of::<PodState>() == 24);
const _: () = assert!(std::mem::size_of::<(PodKey, PodState)>() == 40);

/// One container of a shape.
#[derive(Debug, PartialEq, Eq)]
struct Named {
    name: Box<str>,
    kind: ContainerKind,
}

#[derive(Debug)]
struct Shape {
    containers: Arc<[Named]>,
    pods: u32,
}

/// The interned shapes. Id 0 is the empty shape (a pod without statuses yet), never stored.
#[derive(Debug, Default)]
struct Shapes {
    /// Shape `id` is `slots[id - 1]`; `None` is a freed id, listed in `free`.
    slots: Vec<Option<Shape>>,
    free: Vec<u32>,
    /// Ids by the hash of their containers (collisions share a bucket).
    by_hash: HashMap<u64, Vec<u32>>,
}

fn hash_of<'a>(containers: impl Iterator<Item = (&'a str, ContainerKind)>) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for (name, kind) in containers {
        name.hash(&mut h);
        kind.hash(&mut h);
    }
    h.finish()
}

impl Shapes {
    fn shape(&self, id: u32) -> Option<&Shape> {
        id.checked_sub(1).and_then(|i| self.slots.get(i as usize)?.as_ref())
    }

    fn get(&self, id: u32) -> &[Named] {
        self.shape(id).map_or(&[], |shape| &shape.containers)
    }

    /// The id of the shape `containers`, with one more pod on it.
    fn intern(&mut self, containers: &[(&str, ContainerKind)]) -> u32 {
        if containers.is_empty() {
            return 0;
        }
        let hash = hash_of(containers.iter().copied());
        let same = |shape: &Shape| {
            shape.containers.len() == containers.len()
                && shape.containers.iter().zip(containers).all(|(a, (name, kind))| *a.name == **name && a.kind == *kind)
        };
        let bucket = self.by_hash.entry(hash).or_default();
        for &id in bucket.iter() {
            if let Some(Some(shape)) = self.slots.get_mut(id as usize - 1)
                && same(shape)
            {
                shape.pods = shape.pods.saturating_add(1);
                return id;
            }
        }
        let shape = Shape {
            containers: containers.iter().map(|(name, kind)| Named { name: (*name).into(), kind: *kind }).collect(),
            pods: 1,
        };
        let id = match self.free.pop() {
            Some(id) => {
                self.slots[id as usize - 1] = Some(shape);
                id
            }
            None => {
                self.slots.push(Some(shape));
                // Ids stay below u32::MAX: a shape per pod at most, and far fewer pods.
                u32::try_from(self.slots.len()).unwrap_or(u32::MAX)
            }
        };
        bucket.push(id);
        id
    }

    /// One pod less on shape `id`; the shape is freed with its last pod.
    fn release(&mut self, id: u32) {
        let Some(Some(shape)) = id.checked_sub(1).and_then(|i| self.slots.get_mut(i as usize)) else {
            return;
        };
        shape.pods -= 1;
        if shape.pods > 0 {
            return;
        }
        let hash = hash_of(shape.containers.iter().map(|n| (&*n.name, n.kind)));
        self.slots[id as usize - 1] = None;
        self.free.push(id);
        if let Some(bucket) = self.by_hash.get_mut(&hash) {
            bucket.retain(|&i| i != id);
            if bucket.is_empty() {
                self.by_hash.remove(&hash);
            }
        }
    }

    fn len(&self) -> usize {
        self.slots.len() - self.free.len()
    }
}

/// Every pod the detector tracks.
#[derive(Debug, Default)]
pub struct Pods {
    map: HashMap<PodKey, PodState>,
    /// The slots past the first `INLINE_CONTAINERS`, of the pods with more containers.
    spilled: HashMap<PodKey, Vec<Slot>>,
    shapes: Shapes,
}

impl Pods {
    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn contains(&self, key: &PodKey) -> bool {
        self.map.contains_key(key)
    }

    /// Number of containers tracked.
    pub fn containers(&self) -> usize {
        self.map.values().map(|p| self.shapes.get(p.shape).len()).sum()
    }

    /// Number of distinct shapes (container lists) interned.
    pub fn shapes(&self) -> usize {
        self.shapes.len()
    }

    pub fn get_mut(&mut self, key: PodKey) -> Option<PodMut<'_>> {
        let Pods { map, spilled, shapes } = self;
        map.get_mut(&key).map(|state| PodMut { key, state, spilled, shapes })
    }

    /// The pod, added without containers if it was not tracked.
    pub(crate) fn get_or_insert(&mut self, key: PodKey, generation: u32) -> PodMut<'_> {
        let Pods { map, spilled, shapes } = self;
        crate::churn::make_room(map);
        let state = map.entry(key).or_insert(PodState {
            shape: 0,
            seen_in: generation,
            counts: [0; INLINE_CONTAINERS],
            container_flags: [0; INLINE_CONTAINERS],
            flags: 0,
        });
        PodMut { key, state, spilled, shapes }
    }

    /// Adds a pod seen for the first time, with its containers and their counts (names unique per kind).
    pub fn insert(&mut self, key: PodKey, containers: &[(&str, ContainerKind, u32)], generation: u32) {
        let mut pod = self.get_or_insert(key, generation);
        let names: Vec<(&str, ContainerKind)> = containers.iter().map(|(n, k, _)| (*n, *k)).collect();
        pod.add(&names);
        for (i, (_, _, count)) in containers.iter().enumerate() {
            pod.set_slot(i, Slot { restart_count: *count, flags: 0 });
        }
    }

    pub fn remove(&mut self, key: &PodKey) {
        if let Some(state) = self.map.remove(key) {
            self.release(key, &state);
        }
    }

    /// Keeps the pods for which `keep` is true; returns how many were dropped.
    pub(crate) fn retain(&mut self, mut keep: impl FnMut(&PodState) -> bool) -> usize {
        let before = self.map.len();
        let mut dropped: Vec<(PodKey, u32)> = Vec::new();
        self.map.retain(|key, state| {
            let kept = keep(state);
            if !kept {
                dropped.push((*key, state.shape));
            }
            kept
        });
        for (key, shape) in dropped {
            self.spilled.remove(&key);
            self.shapes.release(shape);
        }
        // A relist after mass deletions: do not keep the table at its peak size.
        if self.map.capacity() > 64 && self.map.len() < self.map.capacity() / 4 {
            self.map.shrink_to_fit();
        }
        before - self.map.len()
    }

    fn release(&mut self, key: &PodKey, state: &PodState) {
        if self.shapes.get(state.shape).len() > INLINE_CONTAINERS {
            self.spilled.remove(key);
        }
        self.shapes.release(state.shape);
    }
}

/// One tracked pod, mutable.
pub(crate) struct PodMut<'a> {
    key: PodKey,
    pub state: &'a mut PodState,
    spilled: &'a mut HashMap<PodKey, Vec<Slot>>,
    shapes: &'a mut Shapes,
}

impl PodMut<'_> {
    /// Number of containers tracked in the pod.
    pub fn len(&self) -> usize {
        self.shapes.get(self.state.shape).len()
    }

    /// The index of the container `name` of `kind`, looking at index `hint` first: a pod lists its containers in the order of
    /// its shape, so the caller that walks the statuses passes the index after the last one found,
    /// and a pod's containers are found in linear time however many it has.
    pub(crate) fn find_near(&self, name: &str, kind: ContainerKind, hint: usize) -> Option<usize> {
        self.find_near_any(name, &[kind], hint)
    }

    /// [`PodMut::find_near`] for a container of any of `kinds` (an init container's status does
    /// not say whether it is a native sidecar).
    pub(crate) fn find_near_any(&self, name: &str, kinds: &[ContainerKind], hint: usize) -> Option<usize> {
        let shape = self.shapes.get(self.state.shape);
        let is = |n: &Named| {
            #[cfg(test)]
            NAME_COMPARISONS.with(|c| c.set(c.get() + 1));
            kinds.contains(&n.kind) && *n.name == *name
        };
        match shape.get(hint) {
            Some(n) if is(n) => Some(hint),
            _ => shape.iter().position(is),
        }
    }

    pub fn name(&self, index: usize) -> &str {
        self.shapes.get(self.state.shape).get(index).map_or("", |n| &n.name)
    }

    pub fn kind(&self, index: usize) -> ContainerKind {
        self.shapes.get(self.state.shape).get(index).map_or(ContainerKind::App, |n| n.kind)
    }

    pub(crate) fn slot(&self, index: usize) -> Slot {
        if index < INLINE_CONTAINERS {
            Slot { restart_count: self.state.counts[index], flags: self.state.container_flags[index] }
        } else {
            self.spilled.get(&self.key).and_then(|s| s.get(index - INLINE_CONTAINERS)).copied().unwrap_or_default()
        }
    }

    pub(crate) fn set_slot(&mut self, index: usize, slot: Slot) {
        if index < INLINE_CONTAINERS {
            self.state.counts[index] = slot.restart_count;
            self.state.container_flags[index] = slot.flags;
        } else if let Some(s) = self.spilled.get_mut(&self.key).and_then(|s| s.get_mut(index - INLINE_CONTAINERS)) {
            *s = slot;
        }
    }

    /// Whether any container's flags have one of `bits`.
    pub(crate) fn any_flag(&self, bits: u8) -> bool {
        (0..self.len()).any(|i| self.slot(i).flags & bits != 0)
    }

    /// Appends containers (not yet tracked) to the pod, with zeroed slots: the pod moves to the
    /// shape of its containers and these.
    pub fn add(&mut self, more: &[(&str, ContainerKind)]) {
        if more.is_empty() {
            return;
        }
        let old = self.state.shape;
        let before = self.shapes.get(old).len();
        // The old shape's names, held apart from the interner (no allocation for a pod's first).
        let held = self.shapes.shape(old).map(|shape| shape.containers.clone());
        let list: Vec<(&str, ContainerKind)> =
            held.iter().flat_map(|c| c.iter()).map(|n| (&*n.name, n.kind)).chain(more.iter().copied()).collect();
        let new = self.shapes.intern(&list);
        self.shapes.release(old);
        self.state.shape = new;
        let after = list.len();
        if after > INLINE_CONTAINERS {
            let spilled = self.spilled.entry(self.key).or_default();
            spilled.resize(after - INLINE_CONTAINERS, Slot::default());
            spilled.shrink_to_fit();
        }
        for i in before..after.min(INLINE_CONTAINERS) {
            self.state.counts[i] = 0;
            self.state.container_flags[i] = 0;
        }
    }
}

#[cfg(test)]
thread_local! {
    /// How many shape entries `find_near_any` compared on this thread (a test's count of work).
    pub(super) static NAME_COMPARISONS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

#[cfg(test)]
mod tests {
    use super::*;

    const APP: ContainerKind = ContainerKind::App;
    const INIT: ContainerKind = ContainerKind::Init;

    fn key(n: u8) -> PodKey {
        PodKey::from_bytes([n; 16])
    }

    fn key_of(n: u64) -> PodKey {
        PodKey::from_bytes(u128::from(n).wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835).to_ne_bytes())
    }

    #[test]
    fn pods_created_and_deleted_at_a_steady_count_keep_the_maps_table_at_its_size() {
        // 22,500 pods: more than half of the 28,672 a table of 32,768 slots holds.
        let mut pods = Pods::default();
        for n in 0..22_500 {
            pods.insert(key_of(n), &[("app", APP, 0)], 1);
        }
        let room = pods.map.capacity();
        for n in 0..100_000 {
            pods.remove(&key_of(n));
            pods.insert(key_of(22_500 + n), &[("app", APP, 0)], 1);
            assert!(pods.map.capacity() <= room, "the table grew after {n} pods replaced");
        }
        assert_eq!(pods.len(), 22_500);
        assert!(pods.contains(&key_of(122_499)) && !pods.contains(&key_of(99_999)));
    }

    #[test]
    fn pods_of_one_template_share_one_shape_which_goes_with_the_last_of_them() {
        let mut pods = Pods::default();
        for n in 0..10 {
            pods.insert(key(n), &[("init", INIT, 0), ("app", APP, n.into()), ("proxy", APP, 1)], 1);
        }
        assert_eq!((pods.len(), pods.containers(), pods.shapes()), (10, 30, 1));
        let pod = pods.get_mut(key(7)).unwrap();
        assert_eq!(
            (pod.find_near("app", APP, 0), pod.find_near("app", INIT, 1), pod.find_near("proxy", APP, 2)),
            (Some(1), None, Some(2)),
            "found from any hint"
        );
        assert_eq!(pod.find_near_any("init", &[INIT, APP], 2), Some(0));
        assert_eq!(pod.slot(1).restart_count, 7);
        for n in 0..9 {
            pods.remove(&key(n));
        }
        assert_eq!(pods.shapes(), 1);
        pods.remove(&key(9));
        assert_eq!((pods.len(), pods.shapes()), (0, 0));
        assert!(pods.shapes.by_hash.is_empty());
    }

    #[test]
    fn a_container_added_later_moves_the_pod_to_a_new_shape_and_keeps_its_slots() {
        let mut pods = Pods::default();
        pods.insert(key(1), &[("app", APP, 4)], 1);
        pods.insert(key(2), &[("app", APP, 0)], 1);
        let mut pod = pods.get_mut(key(1)).unwrap();
        pod.set_slot(0, Slot { restart_count: 5, flags: 3 });
        pod.add(&[("sidecar", INIT)]);
        assert_eq!((pod.len(), pod.slot(0), pod.slot(1)), (2, Slot { restart_count: 5, flags: 3 }, Slot::default()));
        assert_eq!(pods.shapes(), 2);
        pods.remove(&key(2));
        assert_eq!(pods.shapes(), 1, "the one-container shape went with its last pod");
    }

    #[test]
    fn containers_past_the_inline_ones_spill_and_their_slots_go_with_the_pod() {
        let mut pods = Pods::default();
        let many: Vec<(String, u32)> = (0..6).map(|i| (format!("c{i}"), i * 10)).collect();
        let list: Vec<(&str, ContainerKind, u32)> = many.iter().map(|(n, c)| (n.as_str(), APP, *c)).collect();
        pods.insert(key(1), &list, 1);
        let mut pod = pods.get_mut(key(1)).unwrap();
        assert_eq!((0..6).map(|i| pod.slot(i).restart_count).collect::<Vec<_>>(), [0, 10, 20, 30, 40, 50]);
        pod.set_slot(5, Slot { restart_count: 51, flags: 1 });
        assert!(pod.any_flag(1));
        assert_eq!(pod.slot(5).restart_count, 51);
        assert_eq!(pods.spilled.len(), 1);
        assert_eq!(pods.retain(|p| p.seen_in == 2), 1);
        assert!(pods.spilled.is_empty());
        assert_eq!(pods.shapes(), 0);
    }

    #[test]
    fn freed_shape_ids_are_reused() {
        let mut pods = Pods::default();
        pods.insert(key(1), &[("a", APP, 0)], 1);
        pods.remove(&key(1));
        pods.insert(key(2), &[("b", APP, 0)], 1);
        assert_eq!((pods.shapes.slots.len(), pods.shapes()), (1, 1));
    }
}
