use std::sync::{Arc, Mutex};

use serde_json::{Value, json, value::RawValue};

use super::*;
use crate::core::{Millis, Session, Vocabulary};

const EPOCH: Millis = 1_000;

/// What each fake socket was sent: `(socket, event, data)`.
#[derive(Clone, Default)]
struct Heard(Arc<Mutex<Vec<(String, String, Value)>>>);

impl Heard {
    fn sender(&self, socket: &str) -> Send {
        let heard = self.0.clone();
        let socket = socket.to_owned();
        Arc::new(move |event: &str, data: &RawValue| {
            let data = serde_json::from_str(data.get()).unwrap();
            heard.lock().unwrap().push((socket.clone(), event.to_owned(), data));
        })
    }

    /// The `n` fields of the events `socket` heard.
    fn of(&self, socket: &str) -> Vec<Value> {
        self.0.lock().unwrap().iter().filter(|(s, _, _)| s == socket).map(|(_, _, data)| data["n"].clone()).collect()
    }

    fn events_of(&self, socket: &str) -> Vec<String> {
        self.0.lock().unwrap().iter().filter(|(s, _, _)| s == socket).map(|(_, event, _)| event.clone()).collect()
    }
}

fn change(revision: Option<u64>, to: Recipients) -> Arc<Announcement> {
    Arc::new(Announcement {
        origin: "other".into(),
        session_id: "s".into(),
        epoch: EPOCH,
        revision,
        events: vec![Outgoing { to, event: "room_stats".into(), data: encode(&json!({ "n": revision })) }],
    })
}

fn legacy(revision: u64) -> Arc<Announcement> {
    change(Some(revision), Recipients::Room(Vocabulary::Legacy))
}

/// Deliveries with `socket` seated (legacy) at `revision`.
fn with_member(heard: &Heard, socket: &str, revision: u64) -> Deliveries {
    let deliveries = Deliveries::new(Duration::from_millis(50));
    deliveries.expect("s", socket, Vocabulary::Legacy, heard.sender(socket));
    deliveries.seated("s", socket, EPOCH, Some(revision), &[]);
    deliveries
}

#[test]
fn changes_arriving_out_of_order_are_heard_in_revision_order_once_each() {
    let heard = Heard::default();
    let deliveries = with_member(&heard, "a", 1);
    deliveries.submit(&legacy(1));
    assert_eq!(deliveries.submit(&legacy(3)), Gap::WaitFor(Duration::from_millis(50)));
    assert_eq!(deliveries.submit(&legacy(4)), Gap::None, "one wait at a time");
    deliveries.submit(&legacy(2));
    deliveries.submit(&legacy(3));
    deliveries.submit(&legacy(1));
    assert_eq!(heard.of("a"), [json!(1), json!(2), json!(3), json!(4)]);
    assert_eq!(deliveries.check_gap("s"), GapCheck::Filled);
}

#[test]
fn a_member_hears_its_own_join_and_later_changes_but_nothing_from_before_it() {
    let heard = Heard::default();
    let deliveries = with_member(&heard, "a", 1);
    deliveries.submit(&legacy(1));
    // b's join is revision 3; revision 2 is still on its way from another instance.
    deliveries.expect("s", "b", Vocabulary::Legacy, heard.sender("b"));
    deliveries.submit(&legacy(4));
    deliveries.seated("s", "b", EPOCH, Some(3), &[]);
    deliveries.submit(&legacy(3));
    deliveries.submit(&legacy(2));
    assert_eq!(heard.of("a"), [json!(1), json!(2), json!(3), json!(4)]);
    assert_eq!(heard.of("b"), [json!(3), json!(4)]);
}

#[test]
fn the_first_member_here_starts_at_its_join_and_hears_what_came_meanwhile() {
    let heard = Heard::default();
    let deliveries = Deliveries::new(Duration::from_millis(50));
    deliveries.expect("s", "a", Vocabulary::Legacy, heard.sender("a"));
    // While a's join (revision 6) is being stored: an older change, and the next one.
    deliveries.submit(&legacy(5));
    deliveries.submit(&legacy(7));
    deliveries.seated("s", "a", EPOCH, Some(6), &[]);
    deliveries.submit(&legacy(6));
    assert_eq!(heard.of("a"), [json!(6), json!(7)]);
}

#[test]
fn sessions_without_members_here_are_not_followed() {
    let heard = Heard::default();
    let deliveries = Deliveries::new(Duration::from_millis(50));
    deliveries.submit(&legacy(1));
    assert_eq!(deliveries.sessions(), 0);
    deliveries.expect("s", "a", Vocabulary::Legacy, heard.sender("a"));
    deliveries.unseat("s", "a");
    assert_eq!(deliveries.sessions(), 0, "a refused join leaves nothing behind");
}

#[test]
fn a_gap_that_does_not_fill_is_replaced_by_the_current_state() {
    let heard = Heard::default();
    let deliveries = with_member(&heard, "a", 1);
    deliveries.expect("s", "e", Vocabulary::Enhanced, heard.sender("e"));
    deliveries.seated("s", "e", EPOCH, Some(1), &[]);
    deliveries.submit(&legacy(1));
    deliveries.submit(&legacy(3));
    deliveries.submit(&legacy(5));
    assert!(matches!(deliveries.check_gap("s"), GapCheck::WaitFor(_)), "the wait is not over");
    std::thread::sleep(Duration::from_millis(60));
    assert_eq!(deliveries.check_gap("s"), GapCheck::Resync);
    let session = Session::new("s", 8, EPOCH);
    // The state covers revisions up to 4: 3 is dropped, 5 follows on at once.
    assert_eq!(deliveries.resync("s", Some((&session, 4)), EPOCH), Gap::None);
    assert_eq!(heard.events_of("a"), ["room_stats", "snapshot", "room_stats"]);
    assert_eq!(heard.events_of("e"), ["session:state_sync"]);
    deliveries.submit(&legacy(2));
    deliveries.submit(&legacy(3));
    deliveries.submit(&legacy(4));
    deliveries.submit(&legacy(6));
    assert_eq!(heard.of("a"), [json!(1), Value::Null, json!(5), json!(6)]);
}

#[test]
fn without_a_known_revision_the_waiting_changes_go_as_they_are() {
    let heard = Heard::default();
    let deliveries = with_member(&heard, "a", 1);
    deliveries.submit(&legacy(3));
    deliveries.submit(&legacy(5));
    deliveries.resync("s", None, EPOCH);
    assert_eq!(heard.of("a"), [json!(3), json!(5)]);
}

#[test]
fn changes_without_a_revision_go_at_once_to_everyone_seated() {
    let heard = Heard::default();
    let deliveries = with_member(&heard, "a", 4);
    deliveries.expect("s", "b", Vocabulary::Legacy, heard.sender("b"));
    deliveries.submit(&change(None, Recipients::Room(Vocabulary::Legacy)));
    assert_eq!(heard.of("a"), [Value::Null]);
    assert!(heard.of("b").is_empty(), "a member whose join is not stored yet hears nothing");
}

#[test]
fn recipients_pick_members_by_vocabulary_by_socket_and_leave_the_sender_out() {
    let heard = Heard::default();
    let deliveries = with_member(&heard, "a", 1);
    for (socket, vocabulary) in [("b", Vocabulary::Legacy), ("e", Vocabulary::Enhanced)] {
        deliveries.expect("s", socket, vocabulary, heard.sender(socket));
        deliveries.seated("s", socket, EPOCH, Some(1), &[]);
    }
    deliveries.submit(&change(Some(1), Recipients::RoomExcept(Vocabulary::Legacy, "a".into())));
    deliveries.submit(&change(Some(2), Recipients::Socket("e".into())));
    deliveries.submit(&change(Some(3), Recipients::Room(Vocabulary::Enhanced)));
    assert_eq!(heard.of("a"), Vec::<Value>::new());
    assert_eq!(heard.of("b"), [json!(1)]);
    assert_eq!(heard.of("e"), [json!(2), json!(3)]);
}

#[test]
fn a_session_of_another_life_starts_the_order_over_and_members_hear_it_from_its_start() {
    let heard = Heard::default();
    let deliveries = with_member(&heard, "a", 5);
    deliveries.submit(&legacy(5));
    deliveries.submit(&legacy(6));
    // Made again under the same id, or taken from the store after an outage: revisions start over.
    let renewed = |revision| Arc::new(Announcement { epoch: EPOCH + 1, ..(*legacy(revision)).clone() });
    deliveries.submit(&renewed(1));
    deliveries.submit(&renewed(2));
    assert_eq!(heard.of("a"), [json!(5), json!(6), json!(1), json!(2)]);
}

#[test]
fn a_joiner_gets_its_answer_before_anything_else_then_the_state_a_resync_sent_while_its_join_was_stored() {
    let heard = Heard::default();
    let deliveries = with_member(&heard, "a", 1);
    deliveries.submit(&legacy(1));
    deliveries.expect("s", "j", Vocabulary::Legacy, heard.sender("j"));
    deliveries.submit(&legacy(3));
    // j's join is revision 4; 2 never comes and the state at 5 is sent in its place.
    let session = Session::new("s", 8, EPOCH);
    deliveries.resync("s", Some((&session, 5)), EPOCH);
    let answer =
        [Outgoing { to: Recipients::Socket("j".into()), event: "snapshot".into(), data: encode(&json!({ "n": 4 })) }];
    assert!(deliveries.seated("s", "j", EPOCH, Some(4), &answer));
    assert_eq!(heard.events_of("j"), ["snapshot", "snapshot"], "its answer, then the state");
    assert_eq!(heard.of("j")[0], json!(4));
    deliveries.submit(&legacy(4));
    deliveries.submit(&legacy(6));
    assert_eq!(heard.of("j")[2..], [json!(6)], "its own join is covered by the state");
    assert!(!deliveries.seated("s", "stranger", EPOCH, Some(7), &answer), "not expected: the caller answers");
}

#[test]
fn a_state_older_than_what_members_already_heard_is_not_sent() {
    let heard = Heard::default();
    let deliveries = with_member(&heard, "a", 1);
    deliveries.submit(&legacy(1));
    deliveries.submit(&legacy(3));
    // The wait read the state at 3 from the store; meanwhile 2 came, then 4.
    deliveries.submit(&legacy(2));
    deliveries.submit(&legacy(4));
    let session = Session::new("s", 8, EPOCH);
    assert_eq!(deliveries.resync("s", Some((&session, 3)), EPOCH), Gap::None);
    assert_eq!(heard.events_of("a"), ["room_stats"; 4]);
}

#[test]
fn a_member_who_joined_at_the_resync_s_revision_is_not_sent_the_state_twice() {
    let heard = Heard::default();
    let deliveries = with_member(&heard, "a", 1);
    deliveries.expect("s", "j", Vocabulary::Legacy, heard.sender("j"));
    deliveries.seated("s", "j", EPOCH, Some(3), &[]);
    deliveries.submit(&legacy(1));
    deliveries.submit(&legacy(3));
    let session = Session::new("s", 8, EPOCH);
    deliveries.resync("s", Some((&session, 3)), EPOCH);
    assert_eq!(heard.events_of("a"), ["room_stats", "snapshot"]);
    assert!(heard.events_of("j").is_empty(), "its join's answer is the state at 3");
}
