//! Who on this instance hears a session's changes, and in what order.
//!
//! Every change to a session is an [`Announcement`] carrying the session's revision. The instance
//! that made it hands it to its own [`Deliveries`] and shares it with the others through the
//! store; each instance delivers to its own members only. Per session, [`order::Order`] lets
//! revisions go in order and once each, however they arrived. Each member listens from the
//! revision of its own join: what came before is in its join's snapshot, so it never hears it
//! again. When a missing revision does not come within `REORDER_WAIT_MS`, the gateway sends the
//! members the session's current state instead ([`Deliveries::resync`]).
//!
//! Sending to a member is a closure the gateway registers (it writes to that socket's queue), so
//! this module knows nothing of sockets, and the events of one session are queued under its lock:
//! two tasks delivering for one session can never overtake each other.

mod announcement;
pub mod order;
pub mod wait;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant},
};

use serde_json::value::RawValue;

pub use announcement::{Announcement, Outgoing, Recipients, encode};
use order::Order;

use crate::{
    core::{Millis, Session, Vocabulary},
    protocol::payload,
};

/// Sends one event, its data already encoded, to one member's socket.
pub type Send = Arc<dyn Fn(&str, &RawValue) + std::marker::Send + Sync>;

/// A member connected to this instance.
struct Listener {
    vocabulary: Vocabulary,
    /// The revision of its join: it hears that one and later ones. `None` while its join is
    /// being stored (it hears nothing yet); `Some(0)` when the join's revision is unknown (stored
    /// during a Redis outage), so it hears whatever comes.
    since: Option<u64>,
    send: Send,
}

/// One session's deliveries on this instance.
#[derive(Default)]
struct Feed {
    epoch: Option<Millis>,
    order: Order<Arc<Announcement>>,
    listeners: HashMap<String, Listener>,
    /// The missing revision a wait was started for, and when.
    waiting: Option<(u64, Instant)>,
    /// The state the last resync sent in place of missing changes, and its revision: a member
    /// whose join was being stored meanwhile gets it too.
    last_state: Option<(u64, Vec<Outgoing>)>,
}

/// What the caller must do after handing over an announcement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gap {
    /// Nothing: every revision went, or a wait is already running.
    None,
    /// A revision is missing: call [`Deliveries::check_gap`] after this long.
    WaitFor(Duration),
}

/// What a finished wait found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GapCheck {
    /// The missing revisions came.
    Filled,
    /// Another revision is missing now: check again after this long.
    WaitFor(Duration),
    /// The missing revision never came: send the current state ([`Deliveries::resync`]).
    Resync,
}

/// The deliveries of every session with members on this instance.
pub struct Deliveries {
    feeds: Mutex<HashMap<String, Arc<Mutex<Feed>>>>,
    wait: Duration,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing here panics halfway through a change of the maps.
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Deliveries {
    /// `wait`: how long a revision waits for a missing earlier one (`REORDER_WAIT_MS`).
    pub fn new(wait: Duration) -> Self {
        Self { feeds: Mutex::default(), wait }
    }

    fn feed(&self, session_id: &str) -> Option<Arc<Mutex<Feed>>> {
        lock(&self.feeds).get(session_id).cloned()
    }

    /// `socket_id` is about to join `session_id`: from now on the session's changes are kept for
    /// it, until [`Self::seated`] says from which revision it hears them.
    pub fn expect(&self, session_id: &str, socket_id: &str, vocabulary: Vocabulary, send: Send) {
        // Under the map's lock, as `unseat` removes an emptied feed: a feed being removed is
        // never joined.
        let mut feeds = lock(&self.feeds);
        let feed = feeds.entry(session_id.to_owned()).or_default();
        lock(feed).listeners.insert(socket_id.to_owned(), Listener { vocabulary, since: None, send });
    }

    /// `socket_id`'s join was stored as `revision` of the session created at `epoch`: it is sent
    /// `answer` (its join's snapshot), then hears that revision's events and later ones. The
    /// first member here starts the session's order. False when the socket was not expected
    /// (the caller sends the answer itself). The join's own announcement follows at once: a gap
    /// is looked for then.
    pub fn seated(
        &self,
        session_id: &str,
        socket_id: &str,
        epoch: Millis,
        revision: Option<u64>,
        answer: &[Outgoing],
    ) -> bool {
        let Some(feed) = self.feed(session_id) else { return false };
        let mut feed = lock(&feed);
        feed.follow_epoch(epoch);
        let Some(listener) = feed.listeners.get_mut(socket_id) else { return false };
        listener.since = Some(revision.unwrap_or(0));
        let (send, vocabulary) = (listener.send.clone(), listener.vocabulary);
        // Under the feed's lock: nothing the member hears can come before its answer.
        for event in answer {
            send(&event.event, &event.data);
        }
        match revision {
            Some(revision) if !feed.order.is_started() => {
                let ready = feed.order.start_at(revision);
                feed.send_all(ready);
            }
            // A resync went past this join while it was being stored: the state it sent covers
            // the changes this member would otherwise never hear.
            Some(revision) if feed.order.next().is_some_and(|next| revision < next) => {
                if let Some((_, state)) = feed.last_state.as_ref().filter(|(covered, _)| *covered >= revision) {
                    for event in Feed::addressed_to(state, socket_id, vocabulary) {
                        send(&event.event, &event.data);
                    }
                }
            }
            _ => {}
        }
        true
    }

    /// `socket_id` no longer sits in `session_id` (it left, moved, or its join was refused).
    pub fn unseat(&self, session_id: &str, socket_id: &str) {
        let mut feeds = lock(&self.feeds);
        let Some(feed) = feeds.get(session_id) else { return };
        let mut feed_state = lock(feed);
        feed_state.listeners.remove(socket_id);
        if feed_state.listeners.is_empty() {
            drop(feed_state);
            feeds.remove(session_id);
        }
    }

    /// Delivers `announcement` to the members here, in revision order.
    pub fn submit(&self, announcement: &Arc<Announcement>) -> Gap {
        let Some(feed) = self.feed(&announcement.session_id) else { return Gap::None };
        let mut feed = lock(&feed);
        feed.follow_epoch(announcement.epoch);
        let Some(revision) = announcement.revision else {
            feed.send(u64::MAX, &announcement.events);
            return Gap::None;
        };
        let mut ready = feed.order.offer(revision, announcement.clone());
        // Members who joined during an outage start wherever the first revision finds them.
        if !feed.order.is_started() && feed.listeners.values().any(|l| l.since.is_some()) {
            ready.extend(feed.order.start_at(revision));
        }
        feed.send_all(ready);
        feed.gap(self.wait)
    }

    /// After a wait: whether the revision it waited for came.
    pub fn check_gap(&self, session_id: &str) -> GapCheck {
        let Some(feed) = self.feed(session_id) else { return GapCheck::Filled };
        let mut feed = lock(&feed);
        match (feed.order.missing(), feed.waiting) {
            (None, _) => {
                feed.waiting = None;
                GapCheck::Filled
            }
            (Some(missing), Some((waited_for, since))) if missing == waited_for => {
                match self.wait.checked_sub(since.elapsed()) {
                    Some(left) if !left.is_zero() => GapCheck::WaitFor(left),
                    _ => GapCheck::Resync,
                }
            }
            (Some(missing), _) => {
                feed.waiting = Some((missing, Instant::now()));
                GapCheck::WaitFor(self.wait)
            }
        }
    }

    /// A gap did not fill: every member here gets `session` as it stands at `revision` (legacy
    /// members a `snapshot`, enhanced ones a `session:state_sync`), and the changes it covers are
    /// dropped. `None`: the revision cannot be known (Redis unreachable), so what waits goes as it
    /// is. Returns whether a later gap is waiting.
    pub fn resync(&self, session_id: &str, current: Option<(&Session, u64)>, now: Millis) -> Gap {
        let Some(feed) = self.feed(session_id) else { return Gap::None };
        let mut feed = lock(&feed);
        feed.waiting = None;
        let ready = match current {
            // Everything up to a later revision went meanwhile, in order: this state is older.
            Some((_, revision)) if feed.order.next().is_some_and(|next| revision < next) => Vec::new(),
            Some((session, revision)) => {
                tracing::info!(session = %session_id, revision, "a change never arrived; members here get the current state");
                let state = vec![
                    Outgoing {
                        to: Recipients::Room(Vocabulary::Legacy),
                        event: "snapshot".into(),
                        data: encode(&payload::snapshot(session, now)),
                    },
                    Outgoing {
                        to: Recipients::Room(Vocabulary::Enhanced),
                        event: "session:state_sync".into(),
                        data: encode(&payload::state_sync(session, now)),
                    },
                ];
                // A member who joined at this very revision has it in its join's answer.
                feed.send_where(&state, |since| since < revision);
                feed.last_state = Some((revision, state));
                feed.order.skip_through(revision)
            }
            None => feed.order.release_all(),
        };
        feed.send_all(ready);
        feed.gap(self.wait)
    }

    /// Sessions with members here.
    #[cfg(test)]
    fn sessions(&self) -> usize {
        lock(&self.feeds).len()
    }
}

impl Feed {
    /// Keeps to the session's current life: a different creation time starts the order over,
    /// and every member hears the new life from its start. (After a Redis outage, an instance
    /// that made the session afresh while cut off takes the stored one's creation time.)
    fn follow_epoch(&mut self, epoch: Millis) {
        if self.epoch.is_some_and(|current| current != epoch) {
            self.order = Order::default();
            self.waiting = None;
            self.last_state = None;
            for listener in self.listeners.values_mut() {
                listener.since = listener.since.map(|_| 0);
            }
        }
        self.epoch = Some(epoch);
    }

    fn send_all(&self, ready: Vec<(u64, Arc<Announcement>)>) {
        for (revision, announcement) in ready {
            self.send(revision, &announcement.events);
        }
    }

    /// Sends `revision`'s events to the members listening since it or earlier.
    fn send(&self, revision: u64, events: &[Outgoing]) {
        self.send_where(events, |since| since <= revision);
    }

    /// Sends `events` to the seated members whose join revision `listens` accepts.
    fn send_where(&self, events: &[Outgoing], listens: impl Fn(u64) -> bool) {
        for (socket_id, listener) in &self.listeners {
            if !listener.since.is_some_and(&listens) {
                continue;
            }
            for event in Self::addressed_to(events, socket_id, listener.vocabulary) {
                (listener.send)(&event.event, &event.data);
            }
        }
    }

    /// The events of `events` that member `socket_id`, speaking `vocabulary`, hears.
    fn addressed_to<'a>(
        events: &'a [Outgoing],
        socket_id: &'a str,
        vocabulary: Vocabulary,
    ) -> impl Iterator<Item = &'a Outgoing> + 'a {
        events.iter().filter(move |event| match &event.to {
            Recipients::Room(room) => *room == vocabulary,
            Recipients::RoomExcept(room, except) => *room == vocabulary && socket_id != except,
            Recipients::Socket(id) => socket_id == id,
        })
    }

    /// Starts a wait when a revision is newly missing.
    fn gap(&mut self, wait: Duration) -> Gap {
        let Some(missing) = self.order.missing() else {
            self.waiting = None;
            return Gap::None;
        };
        if self.waiting.is_some() {
            // The running wait checks again when it ends.
            return Gap::None;
        }
        self.waiting = Some((missing, Instant::now()));
        Gap::WaitFor(wait)
    }
}

#[cfg(test)]
mod tests;
