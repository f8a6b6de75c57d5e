//! Puts a session's changes back in revision order, once each.
//!
//! Changes made on different instances reach an instance by different roads: its own at once,
//! the others' through Redis, each as fast as its instance published it. [`Order`] holds a change
//! while an earlier revision is still missing, lets the held ones go as soon as the gap fills,
//! and drops any revision it has already let go (or decided to skip), so a change is never heard
//! twice.

use std::collections::BTreeMap;

/// Revisions in order. `T` is what a revision carries.
#[derive(Debug)]
pub struct Order<T> {
    /// The revision to let go next; `None` until the instance knows where its members start.
    next: Option<u64>,
    held: BTreeMap<u64, T>,
}

impl<T> Default for Order<T> {
    fn default() -> Self {
        Self { next: None, held: BTreeMap::new() }
    }
}

impl<T> Order<T> {
    /// Whether the starting point is known.
    pub fn is_started(&self) -> bool {
        self.next.is_some()
    }

    /// Takes revision `revision`; returns the revisions that may go now, in order. A revision
    /// already let go, skipped or held is dropped.
    pub fn offer(&mut self, revision: u64, item: T) -> Vec<(u64, T)> {
        if self.next.is_some_and(|next| revision < next) {
            return Vec::new();
        }
        self.held.entry(revision).or_insert(item);
        self.drain()
    }

    /// Starts at `next` (when not started yet): earlier revisions are dropped, held later ones go
    /// as far as they follow on.
    pub fn start_at(&mut self, next: u64) -> Vec<(u64, T)> {
        if self.next.is_none() {
            self.next = Some(next);
            self.held = self.held.split_off(&next);
        }
        self.drain()
    }

    /// Moves past everything up to and including `revision` (its state was sent instead): held
    /// revisions up to it are dropped, later ones go as far as they follow on.
    pub fn skip_through(&mut self, revision: u64) -> Vec<(u64, T)> {
        let next = self.next.map_or(revision + 1, |next| next.max(revision + 1));
        self.next = Some(next);
        self.held = self.held.split_off(&next);
        self.drain()
    }

    /// Lets everything held go, in order, past any gap (when the missing revisions cannot be
    /// known any more).
    pub fn release_all(&mut self) -> Vec<(u64, T)> {
        let released: Vec<(u64, T)> = std::mem::take(&mut self.held).into_iter().collect();
        if let Some((last, _)) = released.last() {
            self.next = Some(last + 1);
        }
        released
    }

    /// The revision to let go next, once started.
    pub fn next(&self) -> Option<u64> {
        self.next
    }

    /// The first missing revision while later ones wait for it.
    pub fn missing(&self) -> Option<u64> {
        self.next.filter(|_| !self.held.is_empty())
    }

    /// Revisions waiting (for a gap to fill, or for the start).
    pub fn held(&self) -> usize {
        self.held.len()
    }

    fn drain(&mut self) -> Vec<(u64, T)> {
        let mut ready = Vec::new();
        let Some(mut next) = self.next else { return ready };
        while let Some(entry) = self.held.first_entry().filter(|e| *e.key() == next) {
            ready.push((next, entry.remove()));
            next += 1;
        }
        self.next = Some(next);
        ready
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn revisions(ready: Vec<(u64, &str)>) -> Vec<u64> {
        ready.into_iter().map(|(revision, _)| revision).collect()
    }

    #[test]
    fn revisions_in_order_go_at_once() {
        let mut order = Order::default();
        assert!(order.start_at(5).is_empty());
        assert_eq!(revisions(order.offer(5, "a")), [5]);
        assert_eq!(revisions(order.offer(6, "b")), [6]);
        assert_eq!(order.missing(), None);
    }

    #[test]
    fn a_later_revision_waits_for_the_missing_one_then_both_go_in_order() {
        let mut order = Order::default();
        order.start_at(1);
        assert!(order.offer(2, "second").is_empty());
        assert_eq!(order.missing(), Some(1));
        assert_eq!(order.offer(1, "first"), [(1, "first"), (2, "second")]);
        assert_eq!(order.missing(), None);
    }

    #[test]
    fn a_revision_is_let_go_once() {
        let mut order = Order::default();
        order.start_at(1);
        assert_eq!(revisions(order.offer(1, "a")), [1]);
        assert!(order.offer(1, "a again").is_empty());
        assert!(order.offer(3, "c").is_empty());
        assert!(order.offer(3, "c again").is_empty());
        assert_eq!(order.offer(2, "b"), [(2, "b"), (3, "c")]);
    }

    #[test]
    fn before_the_start_everything_waits_and_the_start_drops_what_came_before_it() {
        let mut order = Order::default();
        assert!(order.offer(7, "before the join").is_empty());
        assert!(order.offer(9, "after the join").is_empty());
        assert_eq!(order.held(), 2);
        // The join was revision 8: it goes next, then 9.
        assert!(order.start_at(8).is_empty());
        assert_eq!(order.missing(), Some(8));
        assert_eq!(order.offer(8, "the join"), [(8, "the join"), (9, "after the join")]);
    }

    #[test]
    fn skipping_a_gap_drops_what_the_state_covers_and_lets_later_revisions_go() {
        let mut order = Order::default();
        order.start_at(1);
        order.offer(3, "c");
        order.offer(4, "d");
        order.offer(6, "f");
        // The state sent instead covers revision 4.
        assert!(order.skip_through(4).is_empty());
        assert_eq!(order.missing(), Some(5));
        assert_eq!(order.offer(5, "e"), [(5, "e"), (6, "f")]);
        assert!(order.offer(2, "b, late").is_empty(), "covered by the state");
    }

    #[test]
    fn releasing_lets_everything_go_past_the_gaps() {
        let mut order = Order::default();
        order.start_at(1);
        order.offer(3, "c");
        order.offer(5, "e");
        assert_eq!(revisions(order.release_all()), [3, 5]);
        assert_eq!(order.missing(), None);
        assert!(order.offer(4, "d, late").is_empty());
        assert_eq!(revisions(order.offer(6, "f")), [6]);
    }
}
