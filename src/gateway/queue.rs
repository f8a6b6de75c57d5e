//! The ordered queue of one socket's events, in which state-setting events past their budget
//! wait, and are coalesced while they wait.
//!
//! The app sends `set_tempo` from a slider callback, tens of times a second. Refusing what is
//! over budget would lose the value the leader let go of; queueing everything would bury the
//! band in snapshots of values long gone. So an event that sets state (a tempo, a position, the
//! message line) and finds its budget spent is queued as *waiting*: the worker applies it once
//! the budget allows. Until then a newer event setting the same state replaces it in place, so
//! the band always ends on what the sender sent last, and hears at the budget's rate meanwhile.
//!
//! Order is kept as Node's socket.io keeps it, with one allowance: a waiting event may take the
//! newer value of its own state, but never past another kind of event. Anything that is not a
//! state-setting event (a `play`, a join, a leave) is a barrier: what was sent before it is
//! applied before it, and what was sent after it, after.
//!
//! A state is a class of event ([`EventClass::coalesces`]: tempo, seek, message), whatever session
//! the event names: a socket sits in one session, and moving to another is a join, a barrier.
//! So after the last barrier each state has at most one waiting event, and a full queue refuses
//! a state-setting event that has none to replace, as it refuses any other.

use std::{
    collections::VecDeque,
    sync::{Mutex, MutexGuard},
};

use tokio::sync::Notify;

use super::throttle::{EventClass, Throttle};

/// What became of a state-setting event.
#[derive(Debug, PartialEq)]
pub enum Coalesced<T> {
    /// Queued, within its budget (`waiting: false`) or waiting for it.
    Queued { waiting: bool },
    /// It took the place of an older event of the same state, still waiting, which `absorb` was
    /// handed.
    Replaced,
    /// Nothing to replace, and the queue is full: the event is given back, to be refused.
    Full(T),
    /// The socket's worker has finished: the event goes nowhere.
    Closed,
}

/// Why an event could not be queued; the event is given back.
#[derive(Debug, PartialEq)]
pub enum Refused<T> {
    Full(T),
    Closed(T),
}

struct Entry<T> {
    item: T,
    /// Set for state-setting events: the state, and whether the event waits for its budget.
    state: Option<(EventClass, bool)>,
}

struct Items<T> {
    entries: VecDeque<Entry<T>>,
    closed: bool,
}

/// One socket's queue: filled as packets arrive, drained by the socket's worker.
pub struct EventQueue<T> {
    items: Mutex<Items<T>>,
    /// Wakes the worker; it is the only one waiting, so a wake-up given while it is busy is kept.
    ready: Notify,
    /// Events past this many are refused, unless they take a waiting event's place.
    capacity: usize,
}

impl<T> EventQueue<T> {
    pub fn new(capacity: usize) -> Self {
        // Empty until the first event: an idle socket's queue allocates nothing.
        Self { items: Mutex::new(Items { entries: VecDeque::new(), closed: false }), ready: Notify::new(), capacity }
    }

    /// Queues an event that sets no state; refused when the queue is full.
    pub fn push(&self, item: T) -> Result<(), Refused<T>> {
        let items = self.items.lock().expect("queue lock");
        if items.closed {
            return Err(Refused::Closed(item));
        }
        if items.entries.len() >= self.capacity {
            return Err(Refused::Full(item));
        }
        self.append(items, Entry { item, state: None });
        Ok(())
    }

    /// Queues what the connection itself tells the worker (its close, a seat to check): never
    /// refused for room, since nothing else would tell it.
    pub fn push_notice(&self, item: T) {
        let items = self.items.lock().expect("queue lock");
        if !items.closed {
            self.append(items, Entry { item, state: None });
        }
    }

    /// Queues an event setting the state `key`. When an older event of the same state still
    /// waits, with no other kind of event queued after it, this one takes its place, and
    /// `absorb(new, old)` takes what it needs of the old one (its acknowledgement). Otherwise it is
    /// queued, waiting unless `take_budget` finds room for it now, or given back when the queue is
    /// full.
    pub fn push_state(
        &self,
        item: T,
        key: EventClass,
        take_budget: impl FnOnce() -> bool,
        absorb: impl FnOnce(&mut T, T),
    ) -> Coalesced<T> {
        let mut items = self.items.lock().expect("queue lock");
        if items.closed {
            return Coalesced::Closed;
        }
        for entry in items.entries.iter_mut().rev() {
            match &entry.state {
                Some((queued, waiting)) if *queued == key => {
                    if *waiting {
                        let old = std::mem::replace(&mut entry.item, item);
                        absorb(&mut entry.item, old);
                        return Coalesced::Replaced;
                    }
                    break;
                }
                // Another state's event: which of two states is set first changes neither.
                Some(_) => continue,
                None => break,
            }
        }
        if items.entries.len() >= self.capacity {
            return Coalesced::Full(item);
        }
        let waiting = !take_budget();
        self.append(items, Entry { item, state: Some((key, waiting)) });
        Coalesced::Queued { waiting }
    }

    /// Adds `entry` at the back and wakes the worker, once the lock is let go.
    fn append(&self, mut items: MutexGuard<'_, Items<T>>, entry: Entry<T>) {
        items.entries.push_back(entry);
        drop(items);
        self.ready.notify_one();
    }

    /// The next event, once there is one; an event that waits is handed out once `throttle`'s
    /// budget for it allows. `None` once the queue is closed and empty.
    ///
    /// Cancel-safe: nothing is taken from the queue or the budget before the event is returned.
    pub async fn next(&self, throttle: &Throttle) -> Option<T> {
        loop {
            let waits_for = {
                let mut items = self.items.lock().expect("queue lock");
                match items.entries.front() {
                    Some(Entry { state: Some((class, true)), .. }) => Some(*class),
                    Some(_) => return items.entries.pop_front().map(|e| e.item),
                    None if items.closed => return None,
                    None => None,
                }
            };
            match waits_for {
                Some(class) => {
                    throttle.take_when_ready(class).await;
                    // Only this worker takes from the front, so it is the same event, carrying
                    // the newest value sent meanwhile.
                    let mut items = self.items.lock().expect("queue lock");
                    return items.entries.pop_front().map(|e| e.item);
                }
                None => self.ready.notified().await,
            }
        }
    }

    /// Ends the queue: what is still in it is dropped, and nothing more is taken.
    pub fn close(&self) {
        let mut items = self.items.lock().expect("queue lock");
        items.closed = true;
        items.entries.clear();
    }

    /// Events queued now, waiting or not.
    pub fn len(&self) -> usize {
        self.items.lock().expect("queue lock").entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::{config::Config, gateway::throttle::RateLimits};

    const TEMPO: EventClass = EventClass::Tempo;
    const SEEK: EventClass = EventClass::Seek;

    /// Takes nothing of a replaced event.
    fn ignore(_: &mut &'static str, _: &'static str) {}

    /// A throttle letting `per_sec` tempo events through, one at a time.
    fn throttle(per_sec: u32) -> Throttle {
        let mut config = Config::for_tests();
        config.rate_limits.tempo_per_sec = per_sec;
        config.rate_limits.tempo_burst = 1;
        config.rate_limits.seeks_per_sec = per_sec;
        config.rate_limits.seeks_burst = 1;
        Throttle::new(&RateLimits::from_settings(&config.rate_limits))
    }

    async fn drain(queue: &EventQueue<&'static str>, throttle: &Throttle) -> Vec<&'static str> {
        let mut out = Vec::new();
        while !queue.is_empty() {
            out.push(queue.next(throttle).await.expect("open"));
        }
        out
    }

    #[tokio::test]
    async fn events_within_budget_come_out_in_order() {
        let queue = EventQueue::new(16);
        queue.push("join").unwrap();
        assert_eq!(queue.push_state("tempo 90", TEMPO, || true, ignore), Coalesced::Queued { waiting: false });
        assert_eq!(queue.push_state("tempo 100", TEMPO, || true, ignore), Coalesced::Queued { waiting: false });
        queue.push("play").unwrap();
        assert_eq!(drain(&queue, &throttle(1000)).await, ["join", "tempo 90", "tempo 100", "play"]);
    }

    #[tokio::test]
    async fn a_waiting_event_takes_the_newest_value_of_its_state() {
        let queue = EventQueue::new(16);
        queue.push_state("tempo 90", TEMPO, || true, ignore);
        assert_eq!(queue.push_state("tempo 91", TEMPO, || false, ignore), Coalesced::Queued { waiting: true });
        assert_eq!(queue.push_state("tempo 92", TEMPO, || false, ignore), Coalesced::Replaced);
        assert_eq!(queue.push_state("tempo 93", TEMPO, || panic!("no budget needed"), ignore), Coalesced::Replaced);
        assert_eq!(drain(&queue, &throttle(1000)).await, ["tempo 90", "tempo 93"]);
    }

    #[tokio::test]
    async fn another_kind_of_event_is_a_barrier() {
        let queue = EventQueue::new(16);
        queue.push_state("tempo 91", TEMPO, || false, ignore);
        queue.push("play").unwrap();
        // Sent after the play: it must not be applied before it.
        assert_eq!(queue.push_state("tempo 92", TEMPO, || false, ignore), Coalesced::Queued { waiting: true });
        assert_eq!(queue.push_state("tempo 93", TEMPO, || false, ignore), Coalesced::Replaced);
        assert_eq!(drain(&queue, &throttle(1000)).await, ["tempo 91", "play", "tempo 93"]);
    }

    #[tokio::test]
    async fn states_coalesce_each_on_its_own() {
        let queue = EventQueue::new(16);
        queue.push_state("tempo 91", TEMPO, || false, ignore);
        queue.push_state("seek 1000", SEEK, || false, ignore);
        assert_eq!(queue.push_state("tempo 92", TEMPO, || false, ignore), Coalesced::Replaced);
        assert_eq!(queue.push_state("seek 2000", SEEK, || false, ignore), Coalesced::Replaced);
        assert_eq!(drain(&queue, &throttle(1000)).await, ["tempo 92", "seek 2000"]);
    }

    #[tokio::test]
    async fn an_event_within_budget_is_never_replaced() {
        let queue = EventQueue::new(16);
        queue.push_state("tempo 90", TEMPO, || true, ignore);
        assert_eq!(queue.push_state("tempo 91", TEMPO, || false, ignore), Coalesced::Queued { waiting: true });
        assert_eq!(drain(&queue, &throttle(1000)).await, ["tempo 90", "tempo 91"]);
    }

    #[tokio::test]
    async fn a_waiting_event_comes_out_when_the_budget_allows_and_events_behind_it_wait() {
        let throttle = throttle(20);
        assert!(throttle.try_take(EventClass::Tempo), "the bucket's one token");
        let queue = EventQueue::new(16);
        queue.push_state("tempo 91", TEMPO, || throttle.try_take(EventClass::Tempo), ignore);
        queue.push("play").unwrap();
        let started = std::time::Instant::now();
        assert_eq!(queue.next(&throttle).await, Some("tempo 91"));
        let waited = started.elapsed();
        assert!(waited >= Duration::from_millis(30), "20/s: a token comes after 50 ms, waited {waited:?}");
        assert_eq!(queue.next(&throttle).await, Some("play"));
    }

    #[test]
    fn a_full_queue_refuses_what_takes_no_waiting_events_place() {
        let queue = EventQueue::new(3);
        queue.push("a").unwrap();
        assert_eq!(queue.push_state("tempo 91", TEMPO, || false, ignore), Coalesced::Queued { waiting: true });
        queue.push("b").unwrap();
        assert_eq!(queue.push("c"), Err(Refused::Full("c")));
        assert_eq!(queue.push_state("seek 10", SEEK, || false, ignore), Coalesced::Full("seek 10"));
        // Behind "b", the waiting tempo cannot be replaced: a new one would need room.
        assert_eq!(queue.push_state("tempo 92", TEMPO, || false, ignore), Coalesced::Full("tempo 92"));
        queue.push_notice("disconnected");
        assert_eq!(queue.len(), 4);
        queue.close();
        assert_eq!(queue.push("d"), Err(Refused::Closed("d")));
        assert_eq!(queue.push_state("tempo 92", TEMPO, || true, ignore), Coalesced::Closed);
        assert!(queue.is_empty());
    }

    #[tokio::test]
    async fn the_worker_is_woken_by_an_event_pushed_while_it_waits() {
        let queue = std::sync::Arc::new(EventQueue::new(4));
        let throttle = throttle(1000);
        let pusher = {
            let queue = queue.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(20)).await;
                queue.push("late").unwrap();
            })
        };
        assert_eq!(queue.next(&throttle).await, Some("late"));
        pusher.await.unwrap();
        queue.close();
        assert_eq!(queue.next(&throttle).await, None);
    }
}
