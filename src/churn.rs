//! Maps whose keys come and go (pods, their Events) stay at the size their contents need.
//!
//! A `HashMap` marks the slot of a removed entry as deleted, and a deleted slot uses up the
//! table's room for new keys just as a live entry does. When the room is gone, a table more than
//! half full doubles rather than clearing its deleted slots in place. Under steady churn a
//! detector map of 22,500 pods, in a table with room for 28,672, doubled to 65,536 slots 11
//! minutes into a soak although it never held more pods: +1.3 MiB, kept for good
//! (`docs/performance.md`).
//!
//! [`make_room`] rebuilds such a table instead, before the insert that would double it, with room
//! for an eighth more than it holds: the same number of slots unless the map has truly grown.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};

/// The room a rebuilt table keeps for new keys, as a share of the entries it holds (1/8): a map
/// is rebuilt at most once per `len / ROOM_SHARE` new keys, so each insert moves at most
/// `ROOM_SHARE` entries on average.
pub(crate) const ROOM_SHARE: usize = 8;

/// Makes room for one more key in `map` if its table has none left: rebuilds the table with room
/// for `len / ROOM_SHARE` more entries, which clears its deleted slots. Call it before every
/// insert, even of a key the map holds: `insert` reserves room before it looks for the key. It
/// does nothing (one comparison) while the table has room.
pub(crate) fn make_room<K: Eq + Hash, V, S: BuildHasher + Clone>(map: &mut HashMap<K, V, S>) {
    // `capacity` is the entries held plus the room left: deleted slots count in neither.
    if map.len() < map.capacity() {
        return;
    }
    let len = map.len();
    let mut fresh = HashMap::with_capacity_and_hasher(len + len / ROOM_SHARE + 1, map.hasher().clone());
    fresh.extend(map.drain());
    *map = fresh;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Replaces the oldest key with a new one, `steps` times, keeping `len` keys; returns the
    /// largest capacity seen.
    fn churn(map: &mut HashMap<u64, u64>, len: u64, steps: u64, rebuild: bool) -> usize {
        let mut largest = map.capacity();
        for step in 0..steps {
            map.remove(&step);
            let key = len + step;
            if rebuild {
                make_room(map);
            }
            map.insert(key, step);
            largest = largest.max(map.capacity());
        }
        largest
    }

    fn filled(len: u64) -> HashMap<u64, u64> {
        (0..len).map(|k| (k, k)).collect()
    }

    #[test]
    fn a_churning_map_keeps_its_table_where_a_plain_one_doubles() {
        // 22,500 keys in a table with room for 28,672: more than half full.
        let mut plain = filled(22_500);
        let room = plain.capacity();
        assert!(churn(&mut plain, 22_500, 100_000, false) > room, "the plain map doubles for its deleted slots");

        let mut kept = filled(22_500);
        assert_eq!(churn(&mut kept, 22_500, 100_000, true), room);
        assert_eq!(kept.len(), 22_500);
        assert!(
            (100_000..122_500).all(|k| kept.get(&k) == Some(&(k - 22_500))),
            "every live entry survives the rebuilds"
        );
    }

    #[test]
    fn a_map_that_truly_grows_still_grows() {
        let mut map: HashMap<u64, u64> = HashMap::new();
        for key in 0..100_000 {
            make_room(&mut map);
            map.insert(key, key);
        }
        assert_eq!(map.len(), 100_000);
        assert!(map.capacity() >= 100_000);
    }
}
