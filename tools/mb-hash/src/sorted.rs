//! A map from context-relative paths to values, kept as a sorted vector.
//!
//! Both maps of a run (the stat cache and the digests) are built and then read in path order,
//! so a lookup through a [`Cursor`] first tries the slot after its previous hit and only then
//! binary-searches: for 100,000 files that is one string comparison each instead of a hash or
//! a search. Each reader has its own cursor, so two threads reading one map (a run writes its
//! output and its stat cache at once) do not spoil each other's place.

/// Paths (sorted, unique) and their values.
#[derive(Debug)]
pub struct SortedMap<'a, V> {
    items: Vec<(&'a str, V)>,
}

impl<V> Default for SortedMap<'_, V> {
    fn default() -> Self {
        SortedMap { items: Vec::new() }
    }
}

/// One reader's place in a [`SortedMap`].
pub struct Cursor<'m, 'a, V> {
    map: &'m SortedMap<'a, V>,
    next: usize,
}

impl<'m, V> Cursor<'m, '_, V> {
    /// The value for `path`.
    pub fn get(&mut self, path: &str) -> Option<&'m V> {
        let items = &self.map.items;
        let idx = match items.get(self.next) {
            Some((at_hint, _)) if *at_hint == path => self.next,
            _ => items
                .binary_search_by(|(item_path, _)| (*item_path).cmp(path))
                .ok()?,
        };
        self.next = idx + 1;
        Some(&items[idx].1)
    }
}

impl<'a, V> SortedMap<'a, V> {
    /// The map of `items`, which must be sorted by path without duplicates; None if not.
    pub fn from_sorted(items: Vec<(&'a str, V)>) -> Option<SortedMap<'a, V>> {
        items
            .windows(2)
            .all(|pair| pair[0].0 < pair[1].0)
            .then_some(SortedMap { items })
    }

    /// A reader starting at the first path.
    pub fn cursor(&self) -> Cursor<'_, 'a, V> {
        Cursor { map: self, next: 0 }
    }

    /// The number of paths.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Every path and value, in order.
    pub fn iter(&self) -> impl Iterator<Item = &(&'a str, V)> {
        self.items.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_in_any_order_find_every_value() {
        let map = SortedMap::from_sorted(vec![("a", 1), ("a/b", 2), ("a/c", 3), ("b", 4)]);
        let Some(map) = map else {
            panic!("sorted input refused");
        };
        let mut cursor = map.cursor();
        assert_eq!(cursor.get("a/b"), Some(&2));
        assert_eq!(cursor.get("a/c"), Some(&3));
        assert_eq!(cursor.get("a"), Some(&1));
        assert_eq!(cursor.get("b"), Some(&4));
        assert_eq!(cursor.get("a.c"), None);
        assert_eq!(cursor.get("c"), None);
        // Another reader starts from the beginning, whatever the first one did.
        assert_eq!(map.cursor().get("a"), Some(&1));
        assert_eq!(map.len(), 4);
    }

    #[test]
    fn unsorted_or_duplicate_paths_are_refused() {
        assert!(SortedMap::from_sorted(vec![("b", 1), ("a", 2)]).is_none());
        assert!(SortedMap::from_sorted(vec![("a", 1), ("a", 2)]).is_none());
        assert!(SortedMap::<u8>::from_sorted(Vec::new()).is_some_and(|map| map.is_empty()));
    }
}
