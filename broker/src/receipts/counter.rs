//! A multiset of sequence numbers that answers "how many are at least `s`" in O(log n) for `s`
//! inside a sliding window.
//!
//! The window is `[base, base + capacity)`. Values inside it live in a Fenwick (binary indexed)
//! tree over their offset from `base`; values below it are only counted (`below`), and so are
//! values at or beyond its end (`above`). That keeps every operation total: any value can be
//! inserted and removed, and a query answers exactly whenever the aggregates are enough to know
//! the answer. When they are not (`s` below the window, or beyond it while some values are too),
//! the query says so with `None` and the owner falls back to a scan of its own records.
//!
//! The owner keeps the window over the values it queries most by calling [`WindowedCounter::rebuild`]
//! with a new base and the full set of values; [`WindowedCounter::fits`] says when that is due.

/// Counts of sequence numbers, exact for queries inside a sliding window. See the module docs.
///
/// Counts are `u32` and wrap on overflow (four billion values is far past any conversation), so
/// no sequence of calls can panic; removing a value that was never inserted is a caller bug,
/// caught by a `debug_assert`, and in release leaves the counts wrong but the structure sound.
#[derive(Debug, Clone)]
pub struct WindowedCounter {
    /// The first value of the window.
    base: u64,
    /// Fenwick tree over offsets `0..capacity`, stored 0-based: slot `i - 1` holds node `i`.
    tree: Vec<u32>,
    /// Values below `base`.
    below: u32,
    /// Values at or beyond `base + capacity`.
    above: u32,
    /// All values.
    len: u32,
}

impl WindowedCounter {
    /// An empty counter whose window is `[0, capacity)`. The tree takes `4 × capacity` bytes.
    pub fn new(capacity: usize) -> Self {
        Self { base: 0, tree: vec![0; capacity], below: 0, above: 0, len: 0 }
    }

    /// The first value of the window.
    pub fn base(&self) -> u64 {
        self.base
    }

    /// How many values the window spans.
    pub fn capacity(&self) -> usize {
        self.tree.len()
    }

    /// Whether `value` is below the window's end, so that inserting it keeps every query at or
    /// above the base exact. A value that does not fit is time to [`rebuild`](Self::rebuild).
    pub fn fits(&self, value: u64) -> bool {
        value < self.end()
    }

    /// How many values are stored.
    pub fn len(&self) -> u32 {
        self.len
    }

    /// Whether no value is stored.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Adds one occurrence of `value`.
    pub fn insert(&mut self, value: u64) {
        self.adjust(value, 1);
        self.len = self.len.wrapping_add(1);
    }

    /// Removes one occurrence of `value`, which must have been inserted (and not removed) before.
    pub fn remove(&mut self, value: u64) {
        debug_assert!(self.occurrences(value).is_none_or(|n| n > 0), "removing {value}, which is not stored");
        self.adjust(value, u32::MAX);
        self.len = self.len.wrapping_sub(1);
    }

    /// How many stored values are at least `s`, or `None` when only a scan can tell: `s` is
    /// below the window, or beyond its end while some values are too.
    pub fn count_at_least(&self, s: u64) -> Option<u32> {
        let offset = s.checked_sub(self.base)?;
        match usize::try_from(offset).ok().filter(|&o| o < self.tree.len()) {
            Some(offset) => Some(self.len.wrapping_sub(self.below).wrapping_sub(self.prefix(offset))),
            None => (self.above == 0).then_some(0),
        }
    }

    /// Moves the window to start at `base` and refills it from `values`, the full multiset the
    /// owner holds (its earlier contents are discarded). O(capacity + n).
    pub fn rebuild(&mut self, base: u64, values: impl IntoIterator<Item = u64>) {
        self.base = base;
        self.tree.fill(0);
        self.below = 0;
        self.above = 0;
        self.len = 0;
        for value in values {
            self.len = self.len.wrapping_add(1);
            match self.offset(value) {
                Place::Below => self.below = self.below.wrapping_add(1),
                Place::Above => self.above = self.above.wrapping_add(1),
                Place::At(offset) => {
                    if let Some(slot) = self.tree.get_mut(offset) {
                        *slot = slot.wrapping_add(1);
                    }
                }
            }
        }
        self.build_from_frequencies();
    }

    /// The first value past the window (saturating: a window ending at `u64::MAX` holds every
    /// value but the last, which counts as above).
    fn end(&self) -> u64 {
        let capacity = u64::try_from(self.tree.len()).unwrap_or(u64::MAX);
        self.base.saturating_add(capacity)
    }

    /// Where `value` falls relative to the window.
    fn offset(&self, value: u64) -> Place {
        match value.checked_sub(self.base) {
            None => Place::Below,
            Some(offset) => match usize::try_from(offset) {
                Ok(offset) if offset < self.tree.len() => Place::At(offset),
                _ => Place::Above,
            },
        }
    }

    /// Adds `delta` (wrapping, so `u32::MAX` subtracts one) to the count of `value`.
    fn adjust(&mut self, value: u64, delta: u32) {
        match self.offset(value) {
            Place::Below => self.below = self.below.wrapping_add(delta),
            Place::Above => self.above = self.above.wrapping_add(delta),
            Place::At(offset) => {
                let mut node = offset + 1;
                while let Some(slot) = self.tree.get_mut(node - 1) {
                    *slot = slot.wrapping_add(delta);
                    node += lowest_bit(node);
                }
            }
        }
    }

    /// How many values in the window have an offset below `offset`.
    fn prefix(&self, offset: usize) -> u32 {
        let mut sum = 0u32;
        let mut node = offset;
        while node > 0 {
            sum = sum.wrapping_add(self.tree.get(node - 1).copied().unwrap_or(0));
            node -= lowest_bit(node);
        }
        sum
    }

    /// Turns per-offset counts in `tree` into the Fenwick tree in O(capacity): each node passes
    /// its total up to its parent.
    fn build_from_frequencies(&mut self) {
        for node in 1..=self.tree.len() {
            let parent = node + lowest_bit(node);
            let total = self.tree.get(node - 1).copied().unwrap_or(0);
            if let Some(slot) = self.tree.get_mut(parent - 1) {
                *slot = slot.wrapping_add(total);
            }
        }
    }

    /// How many times `value` is stored, when the counter can tell (it is inside the window).
    fn occurrences(&self, value: u64) -> Option<u32> {
        match self.offset(value) {
            Place::At(offset) => Some(self.prefix(offset + 1).wrapping_sub(self.prefix(offset))),
            Place::Below | Place::Above => None,
        }
    }
}

/// A value's position relative to the window.
enum Place {
    /// Before `base`.
    Below,
    /// Inside, at this offset from `base`.
    At(usize),
    /// At or past `base + capacity`.
    Above,
}

/// The lowest set bit of a Fenwick node index (`node > 0`): the span of values the node sums.
fn lowest_bit(node: usize) -> usize {
    node & node.wrapping_neg()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn naive(values: &[u64], s: u64) -> u32 {
        values.iter().filter(|&&v| v >= s).count() as u32
    }

    #[test]
    fn counts_inside_the_window_and_declines_below_it() {
        let mut counter = WindowedCounter::new(8);
        for v in [0, 3, 3, 7] {
            counter.insert(v);
        }
        assert_eq!(counter.count_at_least(0), Some(4));
        assert_eq!(counter.count_at_least(3), Some(3));
        assert_eq!(counter.count_at_least(4), Some(1));
        assert_eq!(counter.count_at_least(8), Some(0));
        counter.rebuild(3, [0, 3, 3, 7]);
        assert_eq!(counter.count_at_least(2), None);
        assert_eq!(counter.count_at_least(3), Some(3));
        counter.insert(20);
        assert!(!counter.fits(20));
        assert_eq!(counter.count_at_least(11), None, "a value beyond the window hides the answer");
        assert_eq!(counter.count_at_least(10), Some(1));
        counter.remove(20);
        assert_eq!(counter.count_at_least(11), Some(0));
        assert_eq!(counter.len(), 4);
    }

    #[test]
    fn zero_capacity_and_extreme_values_do_not_panic() {
        let mut counter = WindowedCounter::new(0);
        counter.insert(u64::MAX);
        counter.insert(0);
        assert_eq!(counter.count_at_least(0), None);
        counter.remove(u64::MAX);
        counter.remove(0);
        assert_eq!(counter.count_at_least(0), Some(0), "no value is left beyond the (empty) window");
        let mut counter = WindowedCounter::new(4);
        counter.rebuild(u64::MAX - 1, [u64::MAX, 1]);
        assert_eq!(counter.count_at_least(u64::MAX), Some(1));
        assert_eq!(counter.count_at_least(1), None);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u64),
        Remove(usize),
        Rebuild(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0u64..40).prop_map(Op::Insert),
            2 => any::<usize>().prop_map(Op::Remove),
            1 => (0u64..40).prop_map(Op::Rebuild),
        ]
    }

    proptest! {
        /// Whatever the operations, every answer the counter gives equals a count over the values,
        /// and it answers for every `s` in the window once no value lies beyond it.
        #[test]
        fn agrees_with_a_scan(capacity in 0usize..12, ops in proptest::collection::vec(op(), 0..60)) {
            let mut counter = WindowedCounter::new(capacity);
            let mut values = Vec::new();
            for op in ops {
                match op {
                    Op::Insert(v) => { counter.insert(v); values.push(v); }
                    Op::Remove(i) if !values.is_empty() => { counter.remove(values.swap_remove(i % values.len())); }
                    Op::Remove(_) => {}
                    Op::Rebuild(base) => counter.rebuild(base, values.iter().copied()),
                }
                prop_assert_eq!(counter.len() as usize, values.len());
                let all_fit = values.iter().all(|&v| counter.fits(v));
                for s in 0..45 {
                    match counter.count_at_least(s) {
                        Some(n) => prop_assert_eq!(n, naive(&values, s), "s = {}", s),
                        None => prop_assert!(s < counter.base() || !all_fit, "declined s = {}", s),
                    }
                }
            }
        }
    }
}
