//! Sessions under churn, for the soak test.
//!
//! Each session's leader opens it and starts playback, then changes the tempo and stops and
//! restarts playback at random intervals; each other member stays joined but now and then leaves
//! and rejoins, or disconnects and reconnects as an app losing its network would. All of it runs
//! until the deadline, counting what it did and every error code the server sent.

use std::{
    collections::BTreeMap,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use tokio::{
    sync::Semaphore,
    task::JoinSet,
    time::{Instant, sleep, sleep_until},
};

use super::{
    Rng,
    client::{Client, Options},
    now_ms,
    session::{self, ErrorCodes, Refused, Vocabulary},
    tally::Tally,
    wire::Fields,
};

/// Which vocabularies the clients speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    Enhanced,
    Legacy,
    /// Sessions led alternately by enhanced and legacy leaders, members of both kinds in each.
    Mix,
}

impl Mode {
    pub fn vocabulary(self, session: usize, member: usize) -> Vocabulary {
        match self {
            Mode::Enhanced => Vocabulary::Enhanced,
            Mode::Legacy => Vocabulary::Legacy,
            Mode::Mix if (session + member).is_multiple_of(2) => Vocabulary::Enhanced,
            Mode::Mix => Vocabulary::Legacy,
        }
    }
}

/// What the sessions do, and how often.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    pub mode: Mode,
    /// Members per session, the leader included.
    pub members: usize,
    /// Mean time between two churn actions (leave/rejoin or disconnect/reconnect) of one member.
    pub churn_every_seconds: f64,
    /// Mean time between two tempo changes of one leader.
    pub tempo_every_seconds: f64,
    /// Mean time between two stop-and-restart cycles of one session.
    pub restart_every_seconds: f64,
}

/// State shared by every task of the run, and its running counts.
#[derive(Debug)]
pub struct Churn {
    plan: Plan,
    endpoint: String,
    run: String,
    pub deadline: Instant,
    pub tally: Arc<Tally>,
    permits: Semaphore,
    errors: ErrorCodes,
    pub reconnects: AtomicU64,
    pub rejoins: AtomicU64,
    pub restarts: AtomicU64,
    pub tempo_changes: AtomicU64,
    /// Connections the server closed (the tool closes its own only on purpose).
    pub drops: AtomicU64,
    pub join_failures: AtomicU64,
}

impl Churn {
    pub fn new(plan: Plan, endpoint: String, deadline: Instant, connect_concurrency: usize) -> Self {
        Self {
            plan,
            endpoint,
            run: format!("{:x}", now_ms() as u64),
            deadline,
            tally: Arc::default(),
            permits: Semaphore::new(connect_concurrency.max(1)),
            errors: ErrorCodes::default(),
            reconnects: AtomicU64::default(),
            rejoins: AtomicU64::default(),
            restarts: AtomicU64::default(),
            tempo_changes: AtomicU64::default(),
            drops: AtomicU64::default(),
            join_failures: AtomicU64::default(),
        }
    }

    /// Error codes received so far (error events, and refused acknowledgements), with counts.
    pub fn errors(&self) -> BTreeMap<String, u64> {
        self.errors.snapshot()
    }

    fn join_failed(&self, what: &str, err: &anyhow::Error) {
        let failures = self.join_failures.fetch_add(1, Ordering::Relaxed) + 1;
        if let Some(refused) = err.downcast_ref::<Refused>()
            && !refused.reported_as_event
        {
            self.errors.count(&refused.code);
        }
        // The first few reasons are enough; a flood of them would bury the report lines.
        if failures <= 5 {
            eprintln!("{what}: {err:#}");
            if let Some(hint) = super::resource_hint(err) {
                eprintln!("hint: {hint}");
            }
        }
    }

    fn pause(&self, rng: &mut Rng, mean_seconds: f64) -> Instant {
        (Instant::now() + Duration::from_secs_f64(mean_seconds * rng.between(0.5, 1.5))).min(self.deadline)
    }

    fn count(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

fn count_errors(churn: Arc<Churn>) -> impl FnMut(&str, &Fields) + Send + 'static {
    move |name: &str, fields: &Fields| churn.errors.count_event(name, fields)
}

async fn connect(churn: &Arc<Churn>) -> anyhow::Result<Client> {
    let _permit = churn.permits.acquire().await?;
    let options = Options { answer_legacy_ping: true };
    Client::connect(&churn.endpoint, churn.tally.clone(), options, count_errors(churn.clone())).await
}

/// Connects and joins `session_id`, retrying every 2 s until it works or the run is over.
async fn connect_member(churn: &Arc<Churn>, vocabulary: Vocabulary, session_id: &str, name: &str) -> Option<Client> {
    while Instant::now() < churn.deadline {
        let attempt = async {
            let client = connect(churn).await?;
            session::join(&client, vocabulary, session_id, name).await?;
            anyhow::Ok(client)
        };
        match attempt.await {
            Ok(client) => return Some(client),
            Err(err) => churn.join_failed(name, &err),
        }
        sleep(Duration::from_secs(2)).await;
    }
    None
}

/// One member (not the leader): stays joined, and now and then leaves and rejoins, or disconnects
/// and reconnects as an app losing its network would.
async fn member(churn: Arc<Churn>, vocabulary: Vocabulary, session_id: String, name: String, mut rng: Rng) {
    let Some(mut client) = connect_member(&churn, vocabulary, &session_id, &name).await else { return };
    let every = churn.plan.churn_every_seconds;
    while Instant::now() < churn.deadline {
        let wake = churn.pause(&mut rng, every);
        let dropped = tokio::select! {
            _ = client.closed() => true,
            _ = sleep_until(wake) => false,
        };
        if Instant::now() >= churn.deadline {
            break;
        }
        let rejoined = if dropped {
            Churn::count(&churn.drops);
            false
        } else if rng.chance(0.5) {
            session::leave(&client, vocabulary, &session_id);
            sleep(Duration::from_secs_f64(rng.between(0.5, 2.0))).await;
            match session::join(&client, vocabulary, &session_id, &name).await {
                Ok(()) => true,
                Err(err) => {
                    churn.join_failed(&name, &err);
                    false
                }
            }
        } else {
            client.close();
            client.closed().await;
            sleep(Duration::from_secs_f64(rng.between(0.5, 2.0))).await;
            false
        };
        if rejoined {
            Churn::count(&churn.rejoins);
            continue;
        }
        client.close();
        match connect_member(&churn, vocabulary, &session_id, &name).await {
            Some(fresh) => client = fresh,
            None => return,
        }
        Churn::count(&churn.reconnects);
    }
    client.close();
}

/// One session: its leader opens it, starts playback, starts the members, then changes the tempo
/// and stops and restarts playback until the run is over.
pub async fn session_task(churn: Arc<Churn>, index: usize) {
    let vocabulary = churn.plan.mode.vocabulary(index, 0);
    let mut rng = Rng::new(index as u64);
    let name = format!("s{index}m0");
    let opened = async {
        let leader = connect(&churn).await?;
        let id = session::open(&leader, vocabulary, &format!("soak-{}-{index}", churn.run), &name).await?;
        anyhow::Ok((leader, id))
    };
    let (leader, id) = match opened.await {
        Ok(opened) => opened,
        Err(err) => {
            churn.join_failed(&format!("session {index} leader"), &err);
            return;
        }
    };
    session::start(&leader, vocabulary, &id);
    let mut members = JoinSet::new();
    for m in 1..churn.plan.members {
        let member_vocabulary = churn.plan.mode.vocabulary(index, m);
        let member_rng = Rng::new(((index as u64) << 16) | m as u64);
        members.spawn(member(churn.clone(), member_vocabulary, id.clone(), format!("s{index}m{m}"), member_rng));
    }
    let (tempo_every, restart_every) = (churn.plan.tempo_every_seconds, churn.plan.restart_every_seconds);
    let (mut next_tempo, mut next_restart) = (churn.pause(&mut rng, tempo_every), churn.pause(&mut rng, restart_every));
    let (mut playing, mut step) = (true, 0_u32);
    while Instant::now() < churn.deadline {
        tokio::select! {
            _ = leader.closed() => {
                Churn::count(&churn.drops);
                eprintln!("session {index}: the server closed the leader's connection; the session stops churning");
                break;
            }
            _ = sleep_until(next_tempo.min(next_restart)) => {}
        }
        let now = Instant::now();
        if now >= next_tempo {
            step += 1;
            session::set_tempo(&leader, vocabulary, &id, 60 + step % 180);
            Churn::count(&churn.tempo_changes);
            next_tempo = churn.pause(&mut rng, tempo_every);
        }
        if now >= next_restart {
            if playing {
                session::stop(&leader, vocabulary, &id, rng.chance(0.5));
                next_restart = (now + Duration::from_secs_f64(rng.between(1.0, 3.0))).min(churn.deadline);
            } else {
                session::start(&leader, vocabulary, &id);
                Churn::count(&churn.restarts);
                next_restart = churn.pause(&mut rng, restart_every);
            }
            playing = !playing;
        }
    }
    while members.join_next().await.is_some() {}
    leader.close();
}
