//! The Redis store against a real `redis-server`: atomic updates across instances, discovery,
//! survival, outages and the start-up errors an operator sees.

mod support;

use std::{sync::Arc, time::Duration};

use bandsync_server::{
    config::Config,
    core::{
        Action, Command, CoreError, Creation, Joiner, LeaveCause, Passcode, Session, SessionSetup, TempoAnnouncement,
        Vocabulary,
    },
    store::{Applied, Backend, RedisStore, SessionStore},
};
use support::redis::RedisServer;

fn config(redis: &RedisServer) -> Config {
    let mut config = Config::for_tests();
    config.redis_url = Some(redis.url());
    config
}

fn join(by: &str, instance: &str, max_members: usize) -> Command {
    let joiner = Joiner {
        display_name: Some(by.into()),
        vocabulary: Vocabulary::Legacy,
        instance: Some(instance.into()),
        ..Joiner::default()
    };
    let setup = SessionSetup { band_id: Some("band".into()), ..SessionSetup::with_max_members(max_members) };
    Command {
        by: by.into(),
        action: Action::Join { joiner: joiner.into(), wants_lead: false, creation: Creation::IfMissing(setup) },
    }
}

fn command(by: &str, action: Action) -> Command {
    Command { by: by.into(), action }
}

async fn store(config: &Config, server_id: &str) -> Arc<RedisStore> {
    RedisStore::connect(config, server_id).await.expect("connects")
}

/// Twelve members join session `gig` (8 seats) at once, alternately through `a` and `b`.
async fn racing_joins(a: &Arc<RedisStore>, b: &Arc<RedisStore>) -> Vec<Result<Applied, CoreError>> {
    let mut joins = Vec::new();
    for i in 0..12 {
        let instance = if i % 2 == 0 { a.clone() } else { b.clone() };
        joins.push(tokio::spawn(async move { instance.apply("gig", &join(&format!("m{i}"), "x", 8), i).await }));
    }
    let mut results = Vec::new();
    for join in joins {
        results.push(join.await.unwrap());
    }
    results
}

#[tokio::test]
async fn concurrent_joins_on_two_instances_fill_exactly_the_seats() {
    let redis = RedisServer::start(None);
    let config = config(&redis);
    let (a, b) = (store(&config, "a").await, store(&config, "b").await);
    let mut seated = 0;
    let mut full = 0;
    for join in racing_joins(&a, &b).await {
        match join {
            Ok(_) => seated += 1,
            Err(CoreError::SessionFull { max: 8 }) => full += 1,
            Err(other) => panic!("unexpected refusal: {other}"),
        }
    }
    assert_eq!((seated, full), (8, 4));
    let session = b.get("gig").await.unwrap().unwrap();
    assert_eq!(session.members.len(), 8);
    assert_eq!(session.members.iter().filter(|m| session.is_leader(&m.socket_id)).count(), 1, "one leader");
}

#[tokio::test]
async fn a_session_made_on_one_instance_is_found_and_changed_on_another() {
    let redis = RedisServer::start(None);
    let config = config(&redis);
    let (a, b) = (store(&config, "a").await, store(&config, "b").await);
    let mut changes = a.remote_changes().expect("a Redis store hears other instances");
    a.apply("gig", &join("alice", "a", 8), 1).await.unwrap();
    let listed = b.sessions_of_band("band").await.unwrap();
    assert_eq!(listed.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(), ["gig"]);
    b.apply("gig", &join("bob", "b", 8), 2).await.unwrap();
    let tempo =
        Action::SetTempo { tempo: 90.0, announcement: bandsync_server::core::TempoAnnouncement::Silent, ramp_ms: 0.0 };
    a.apply("gig", &command("alice", tempo), 3).await.unwrap();
    // b's change reaches a's cache through the change channel.
    let seen = tokio::time::timeout(Duration::from_secs(2), changes.recv()).await.expect("announced").unwrap();
    assert_eq!(seen.members.len(), 2);
    assert_eq!(b.get("gig").await.unwrap().unwrap().timeline.tempo, 90.0);
    assert_eq!(a.count().await.unwrap(), 1);
}

#[tokio::test]
async fn only_changes_are_written_and_announced() {
    let redis = RedisServer::start(None);
    let config = config(&redis);
    let (a, b) = (store(&config, "a").await, store(&config, "b").await);
    let mut changes = b.remote_changes().expect("a Redis store hears other instances");
    a.apply("gig", &join("alice", "a", 8), 1).await.unwrap();
    tokio::time::timeout(Duration::from_secs(2), changes.recv()).await.expect("the join is announced").unwrap();
    let chat =
        a.apply("gig", &command("alice", Action::Chat { message: "hi".into(), username: None }), 2).await.unwrap();
    assert!(!chat.changed);
    let report = Action::PositionReport { position: 0.0, client_time: 3.0, threshold_ms: 25.0 };
    assert!(!a.apply("gig", &command("alice", report), 3).await.unwrap().changed);
    assert!(
        tokio::time::timeout(Duration::from_millis(300), changes.recv()).await.is_err(),
        "nothing changed, nothing announced"
    );
    assert_eq!(b.get("gig").await.unwrap().unwrap().last_active_at, 1, "nothing written");
    let seek = a.apply("gig", &command("alice", Action::Seek { position: 10.0 }), 4).await.unwrap();
    assert!(seek.changed);
    let seen = tokio::time::timeout(Duration::from_secs(2), changes.recv()).await.expect("announced").unwrap();
    assert_eq!(seen.timeline.position_at(4), 10.0);
}

#[tokio::test]
async fn sessions_outlive_the_instance_that_made_them() {
    let redis = RedisServer::start(None);
    let config = config(&redis);
    {
        let first = store(&config, "a").await;
        first.apply("gig", &join("alice", "a", 8), 1).await.unwrap();
        let start = Action::Start { tempo: Some(100.0), time_signature: None, lead_ms: 0 };
        first.apply("gig", &command("alice", start), 1_000).await.unwrap();
    }
    let restarted = store(&config, "a").await;
    let lost = restarted.lost_members(true).await.unwrap();
    assert_eq!(lost, vec![("gig".to_string(), vec!["alice".to_string()])], "its own members from before");
    let session = restarted.get("gig").await.unwrap().unwrap();
    assert!(session.timeline.is_playing);
    assert_eq!(session.timeline.tempo, 100.0);
    assert_eq!(session.timeline.position_at(4_000), 3_000.0, "the position kept running");
}

#[tokio::test]
async fn members_of_an_instance_without_a_heartbeat_are_lost() {
    let redis = RedisServer::start(None);
    let config = config(&redis);
    let (a, b) = (store(&config, "a").await, store(&config, "b").await);
    a.apply("gig", &join("alice", "a", 8), 1).await.unwrap();
    b.apply("gig", &join("bob", "b", 8), 2).await.unwrap();
    a.heartbeat(10_000).await;
    b.heartbeat(10_000).await;
    assert!(b.lost_members(false).await.unwrap().is_empty(), "both alive");
    // a's last heartbeat lapses at once, as if it died right after sending it.
    a.heartbeat(1).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(b.lost_members(false).await.unwrap(), vec![("gig".to_string(), vec!["alice".to_string()])]);
}

#[tokio::test]
async fn an_outage_is_served_from_the_cache_and_written_back() {
    let redis = RedisServer::start(None);
    let config = config(&redis);
    let (a, b) = (store(&config, "a").await, store(&config, "b").await);
    a.apply("gig", &join("alice", "a", 8), 1).await.unwrap();
    redis.pause();
    let message = Action::UpdateMessage { message: "written while redis was away".into() };
    let during = a.apply("gig", &command("alice", message), 2).await.expect("served from the cache");
    assert_eq!(during.session.message, "written while redis was away");
    assert_eq!(a.backend(), Backend::Disconnected);
    redis.resume();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let seen = b.get("gig").await.unwrap().map(|s| s.message);
        if a.backend() == Backend::Connected && seen.as_deref() == Some("written while redis was away") {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "not written back: {seen:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A configuration that logs in as a Redis user of the instance's own, so that it alone can be
/// cut off ([`cut_off`]) while the others go on.
fn config_of_own_user(redis: &RedisServer, instance: &str) -> Config {
    redis.cli(&["ACL", "SETUSER", &format!("instance-{instance}"), "on", ">secret", "~*", "&*", "+@all"]);
    let mut config = config(redis);
    config.redis_url = Some(format!("redis://instance-{instance}:secret@127.0.0.1:{}", redis.port));
    config
}

/// Cuts `store` (logged in with [`config_of_own_user`]) off Redis and waits until it notices.
async fn cut_off(redis: &RedisServer, store: &RedisStore, instance: &str) {
    let user = format!("instance-{instance}");
    redis.cli(&["ACL", "SETUSER", &user, "off"]);
    redis.cli(&["CLIENT", "KILL", "USER", &user]);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while store.backend() != Backend::Disconnected {
        assert!(tokio::time::Instant::now() < deadline, "instance {instance} did not notice it was cut off");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Lets an instance cut off by [`cut_off`] log in again.
fn let_back(redis: &RedisServer, instance: &str) {
    redis.cli(&["ACL", "SETUSER", &format!("instance-{instance}"), "on"]);
}

/// Two instances on one Redis; `a` can be cut off alone and has seated `members` in "gig".
struct Band {
    redis: RedisServer,
    a: Arc<RedisStore>,
    b: Arc<RedisStore>,
    /// What `a` announces as rewritten after an outage.
    rewritten: tokio::sync::broadcast::Receiver<String>,
}

async fn band_through_a(members: &[&str]) -> Band {
    let redis = RedisServer::start(None);
    let (a, b) = (store(&config_of_own_user(&redis, "a"), "a").await, store(&config(&redis), "b").await);
    let rewritten = a.rewritten_sessions().expect("the redis store announces rewritten sessions");
    for (at, member) in members.iter().enumerate() {
        a.apply("gig", &join(member, "a", 8), at as i64 + 1).await.unwrap();
    }
    Band { redis, a, b, rewritten }
}

/// The socket ids seated in `session`, in seat order.
fn seated(session: &Session) -> Vec<&str> {
    session.members.iter().map(|m| m.socket_id.as_str()).collect()
}

/// True when `rewritten` announces nothing within a second.
async fn nothing_announced(rewritten: &mut tokio::sync::broadcast::Receiver<String>) -> bool {
    tokio::time::timeout(Duration::from_secs(1), rewritten.recv()).await.is_err()
}

/// Waits until `store` is back on Redis with every change from the outage written.
async fn written_back(store: &RedisStore) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while store.backend() != Backend::Connected || store.pending_write_backs() > 0 {
        assert!(tokio::time::Instant::now() < deadline, "the outage's changes were not written back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_join_during_an_outage_does_not_unlock_a_stored_session() {
    let redis = RedisServer::start(None);
    let config = config(&redis);
    let b = store(&config, "b").await;
    let mut locked = join("olivia", "b", 8);
    if let Action::Join { joiner, .. } = &mut locked.action {
        joiner.passcode = Some(Passcode::new("open sesame"));
    }
    b.apply("locked", &locked, 1).await.unwrap();

    // `a` starts after the session was announced and has never seen it: cut off, a join creates
    // an open copy of its own.
    let a = store(&config, "a").await;
    redis.pause();
    let during = a.apply("locked", &join("mallory", "a", 8), 2).await.expect("served from the cache");
    assert_eq!(during.session.members.len(), 1);
    assert!(during.session.passcode_digest.is_none());
    redis.resume();
    written_back(&a).await;

    let stored = b.get("locked").await.unwrap().expect("still stored");
    assert!(stored.passcode_digest.is_some(), "the passcode survived the write-back");
    assert_eq!(seated(&stored), ["olivia"], "the join refused on replay seated nobody");
    // `a` now serves the stored session: a join without the passcode is refused there too.
    let again = a.apply("locked", &join("mallory", "a", 8), 3).await;
    assert!(matches!(again, Err(CoreError::Unauthorized(_))), "{again:?}");
}

#[tokio::test]
async fn changes_made_elsewhere_during_an_outage_survive_the_write_back() {
    let Band { redis, a, b, .. } = band_through_a(&["alice"]).await;

    cut_off(&redis, &a, "a").await;
    let message = Action::UpdateMessage { message: "set on a, cut off".into() };
    a.apply("gig", &command("alice", message), 2).await.expect("served from the cache");
    // Meanwhile the band goes on through `b`.
    b.apply("gig", &join("bob", "b", 8), 3).await.unwrap();
    let tempo = Action::SetTempo { tempo: 132.0, announcement: TempoAnnouncement::Silent, ramp_ms: 0.0 };
    b.apply("gig", &command("alice", tempo), 4).await.unwrap();

    let_back(&redis, "a");
    written_back(&a).await;

    let stored = b.get("gig").await.unwrap().expect("still stored");
    assert_eq!(stored.message, "set on a, cut off", "a's change was written back");
    assert_eq!(seated(&stored), ["alice", "bob"], "b's join was kept");
    assert_eq!(stored.timeline.tempo_at(4), 132.0, "b's tempo was kept");
    // `a` serves the merged session from then on, even cut off again.
    cut_off(&redis, &a, "a").await;
    assert_eq!(a.get("gig").await.unwrap(), Some(stored), "a's copy is the merged session");
}

#[tokio::test]
async fn members_another_instance_unseated_during_the_outage_are_announced_for_a_seat_check() {
    let Band { redis, a, b, mut rewritten } = band_through_a(&["alice"]).await;

    cut_off(&redis, &a, "a").await;
    // `b` takes `a` for lost and unseats its member; `a`, cut off, seats another one.
    let evict = Action::Evict { sockets: vec!["alice".into()], reason: "instance lost".into() };
    b.apply("gig", &command("server", evict), 2).await.unwrap();
    a.apply("gig", &join("carol", "a", 8), 3).await.expect("served from the cache");

    let_back(&redis, "a");
    written_back(&a).await;
    let stored = b.get("gig").await.unwrap().expect("stored");
    assert_eq!(seated(&stored), ["carol"], "carol's join replayed, alice's eviction kept");
    // Nothing was refused, but alice lost her seat: the gateway must hear of the session.
    let announced = tokio::time::timeout(Duration::from_secs(5), rewritten.recv()).await;
    assert_eq!(announced.expect("announced in time").unwrap(), "gig");
}

#[tokio::test]
async fn after_being_cut_off_an_instance_catches_up_with_what_it_did_not_hear() {
    let Band { redis, a, b, mut rewritten } = band_through_a(&["alice", "bob"]).await;

    cut_off(&redis, &a, "a").await;
    // `a` changes nothing; `b` takes it for lost and unseats alice, then changes the tempo.
    let evict = Action::Evict { sockets: vec!["alice".into()], reason: "instance lost".into() };
    b.apply("gig", &command("server", evict), 3).await.unwrap();
    let tempo = Action::SetTempo { tempo: 90.0, announcement: TempoAnnouncement::Silent, ramp_ms: 0.0 };
    b.apply("gig", &command("bob", tempo), 4).await.unwrap();

    let_back(&redis, "a");
    let announced = tokio::time::timeout(Duration::from_secs(10), rewritten.recv()).await;
    assert_eq!(announced.expect("alice's lost seat announced").unwrap(), "gig");
    // `a`'s own copy caught up: cut off again, it serves what `b` did.
    cut_off(&redis, &a, "a").await;
    let copy = a.get("gig").await.unwrap().expect("cached");
    assert_eq!((seated(&copy), copy.timeline.tempo), (vec!["bob"], 90.0));
}

#[tokio::test]
async fn a_write_back_whose_answer_was_lost_is_not_replayed_twice() {
    let Band { redis, a, b, mut rewritten } = band_through_a(&["alice", "bob"]).await;

    cut_off(&redis, &a, "a").await;
    a.apply("gig", &command("alice", Action::Leave(LeaveCause::Left)), 3).await.expect("served from the cache");
    // Writes wait 6 s: `a`'s replay is sent, its answer times out after 2 s, and Redis writes it
    // when the pause ends.
    assert_eq!(redis.cli(&["CLIENT", "PAUSE", "6000", "WRITE"]), "OK");
    let_back(&redis, "a");
    written_back(&a).await;

    assert_eq!(seated(&b.get("gig").await.unwrap().expect("stored")), ["bob"]);
    // Replayed a second time, alice's leave would have been refused (she was gone): nothing was.
    assert!(nothing_announced(&mut rewritten).await, "the write whose answer was lost was replayed again");
}

#[tokio::test]
async fn a_write_whose_answer_was_lost_counts_once() {
    let redis = RedisServer::start(None);
    let config = config(&redis);
    let a = store(&config, "a").await;
    let mut rewritten = a.rewritten_sessions().expect("the redis store announces rewritten sessions");
    a.apply("gig", &join("alice", "a", 8), 1).await.unwrap();
    a.apply("gig", &join("bob", "a", 8), 2).await.unwrap();

    // Writes wait 3.5 s: the leave's write outlasts its 2 s timeout, then happens.
    assert_eq!(redis.cli(&["CLIENT", "PAUSE", "3500", "WRITE"]), "OK");
    let sent = std::time::Instant::now();
    let left = a.apply("gig", &command("alice", Action::Leave(LeaveCause::Left)), 3).await;
    assert!(
        sent.elapsed() >= Duration::from_secs(2),
        "the write was answered within its timeout: {:?}",
        sent.elapsed()
    );
    assert_eq!(seated(&left.expect("answered as done").session), ["bob"]);
    written_back(&a).await;

    let b = store(&config, "b").await;
    assert_eq!(seated(&b.get("gig").await.unwrap().expect("stored")), ["bob"]);
    // Replayed on top of itself, alice's leave would have been refused (she was gone): nothing was.
    assert!(nothing_announced(&mut rewritten).await, "the write whose answer was lost was applied twice");
}

#[tokio::test]
async fn start_up_fails_clearly_without_redis_or_with_a_wrong_password() {
    let guarded = RedisServer::start(Some("secret"));
    let mut wrong = Config::for_tests();
    wrong.redis_url = Some(format!("redis://:wrong@127.0.0.1:{}", guarded.port));
    let err = RedisStore::connect(&wrong, "a").await.err().expect("refused").to_string();
    assert!(err.contains("cannot connect to Redis at redis://***@127.0.0.1"), "{err}");
    assert!(!err.contains("wrong"), "no password in messages: {err}");

    let mut right = Config::for_tests();
    right.redis_host = Some("127.0.0.1".into());
    right.redis_port = guarded.port;
    right.redis_password = Some("secret".into());
    assert!(RedisStore::connect(&right, "a").await.is_ok());

    let nothing_there = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut absent = Config::for_tests();
    absent.redis_url = Some(format!("redis://127.0.0.1:{nothing_there}"));
    let started = std::time::Instant::now();
    let err = RedisStore::connect(&absent, "a").await.err().expect("refused").to_string();
    assert!(err.contains("cannot connect to Redis"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(8), "no hang");
}

#[tokio::test]
async fn every_write_is_the_session_s_next_revision_whichever_instance_made_it() {
    let redis = RedisServer::start(None);
    let config = config(&redis);
    let (a, b) = (store(&config, "a").await, store(&config, "b").await);
    let mut revisions: Vec<u64> = racing_joins(&a, &b)
        .await
        .into_iter()
        .flatten()
        .map(|applied| applied.revision.expect("a stored join has a revision"))
        .collect();
    revisions.sort_unstable();
    assert_eq!(revisions, (1..=8).collect::<Vec<u64>>(), "eight seats, eight revisions, none twice");
    let chat = a.apply("gig", &command("m0", Action::Chat { message: "hi".into(), username: None }), 20).await.unwrap();
    assert_eq!(chat.revision, None, "a chat line writes nothing");
    let (session, revision) = b.get_revised("gig").await.unwrap().expect("stored");
    assert_eq!((session.members.len(), revision), (8, 8));
    assert_eq!(a.get_revised("nowhere").await.unwrap().map(|(_, r)| r), None);
}

#[tokio::test]
async fn an_announcement_shared_by_one_instance_reaches_the_others_and_not_itself() {
    use bandsync_server::delivery::{Announcement, Outgoing, Recipients, encode};
    let redis = RedisServer::start(None);
    let config = config(&redis);
    let (a, b) = (store(&config, "a").await, store(&config, "b").await);
    let (mut at_a, mut at_b) = (a.shared_announcements().unwrap(), b.shared_announcements().unwrap());
    let announcement = Announcement {
        origin: "a".into(),
        session_id: "gig".into(),
        epoch: 1,
        revision: Some(3),
        events: vec![Outgoing {
            to: Recipients::Room(Vocabulary::Legacy),
            event: "room_stats".into(),
            data: encode(&serde_json::json!({ "memberCount": 2 })),
        }],
    };
    a.share(&announcement).await;
    let heard = tokio::time::timeout(Duration::from_secs(2), at_b.recv()).await.expect("shared").unwrap();
    let text = |a: &Announcement| serde_json::to_string(a).unwrap();
    assert_eq!(text(&heard), text(&announcement));
    assert!(tokio::time::timeout(Duration::from_millis(300), at_a.recv()).await.is_err(), "its own comes back unheard");
}
