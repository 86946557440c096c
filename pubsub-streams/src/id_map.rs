//! A map from publishing id to a value, for ids given in increasing order and mostly
//! removed oldest first: a sorted deque. A producer inserts at the back and the broker
//! confirms from the front, where a `BTreeMap` shifted and split its nodes on every
//! insert and remove (2 % of a publish run's CPU in `memmove`).

use std::collections::VecDeque;

/// Values by id, in id order.
#[derive(Debug)]
pub(crate) struct IdMap<V> {
    entries: VecDeque<(u64, V)>,
}

impl<V> Default for IdMap<V> {
    fn default() -> Self {
        Self {
            entries: VecDeque::new(),
        }
    }
}

impl<V> IdMap<V> {
    /// Where `id` is, or where it would go.
    fn find(&self, id: u64) -> Result<usize, usize> {
        // the common lookups are the oldest and the newest
        match (self.entries.front(), self.entries.back()) {
            (Some((first, _)), _) if *first == id => Ok(0),
            (_, Some((last, _))) if *last == id => Ok(self.entries.len() - 1),
            (_, Some((last, _))) if *last < id => Err(self.entries.len()),
            _ => self.entries.binary_search_by_key(&id, |(k, _)| *k),
        }
    }

    /// Inserts `value` under `id`, replacing (and returning) what was there.
    pub(crate) fn insert(&mut self, id: u64, value: V) -> Option<V> {
        match self.find(id) {
            Ok(at) => Some(std::mem::replace(&mut self.entries[at].1, value)),
            Err(at) => {
                self.entries.insert(at, (id, value));
                None
            }
        }
    }

    pub(crate) fn contains_key(&self, id: &u64) -> bool {
        self.find(*id).is_ok()
    }

    pub(crate) fn get_mut(&mut self, id: &u64) -> Option<&mut V> {
        self.find(*id).ok().map(|at| &mut self.entries[at].1)
    }

    pub(crate) fn remove(&mut self, id: &u64) -> Option<V> {
        let at = self.find(*id).ok()?;
        self.entries.remove(at).map(|(_, value)| value)
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// The entries, oldest id first.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&u64, &V)> {
        self.entries.iter().map(|(id, value)| (id, value))
    }

    /// The entries, oldest id first.
    pub(crate) fn iter_mut(&mut self) -> impl Iterator<Item = (&u64, &mut V)> {
        self.entries.iter_mut().map(|(id, value)| (&*id, value))
    }
}

impl<V> IntoIterator for IdMap<V> {
    type Item = (u64, V);
    type IntoIter = std::collections::vec_deque::IntoIter<(u64, V)>;

    /// The entries, oldest id first.
    fn into_iter(self) -> Self::IntoIter {
        self.entries.into_iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_keeps_ids_in_order_whatever_the_insertion_order() {
        let mut map = IdMap::default();
        for id in [5, 1, 9, 3, 7, 10, 2] {
            assert_eq!(map.insert(id, id * 10), None);
        }
        assert_eq!(map.insert(3, 33), Some(30), "replaces");
        let ids: Vec<u64> = map.iter().map(|(id, _)| *id).collect();
        assert_eq!(ids, [1, 2, 3, 5, 7, 9, 10]);
        assert!(map.contains_key(&9) && !map.contains_key(&4) && !map.contains_key(&11));
        assert_eq!(map.get_mut(&3), Some(&mut 33));
        if let Some(v) = map.get_mut(&10) {
            *v += 1;
        }
        assert_eq!(map.get_mut(&10), Some(&mut 101));
    }

    #[test]
    fn removal_from_the_front_the_back_and_the_middle() {
        let mut map = IdMap::default();
        for id in 1..=6 {
            map.insert(id, id);
        }
        assert_eq!(map.remove(&1), Some(1));
        assert_eq!(map.remove(&6), Some(6));
        assert_eq!(map.remove(&4), Some(4));
        assert_eq!(map.remove(&4), None);
        assert_eq!(map.remove(&99), None);
        assert_eq!(map.len(), 3);
        for (_, v) in map.iter_mut() {
            *v *= 2;
        }
        let left: Vec<(u64, u64)> = map.into_iter().collect();
        assert_eq!(left, [(2, 4), (3, 6), (5, 10)]);
    }
}
