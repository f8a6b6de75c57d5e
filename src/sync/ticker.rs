//! One scheduler per instance streams `scroll_tick` to every playing session's members.
//!
//! Sessions register here when they start playing and leave when they stop, so a stopped session
//! costs nothing. Each tick computes the position from the timeline at send time; nothing is
//! accumulated, so ticks cannot drift from the wall clock.

use std::{collections::HashMap, sync::Arc, sync::Mutex, time::Duration};

use tokio::time::MissedTickBehavior;

use crate::{
    clock::now_ms,
    core::{Session, timeline::Timeline},
    gateway::rooms,
    protocol::legacy_render,
    state::AppState,
};

#[derive(Default)]
pub struct Ticker {
    playing: Mutex<HashMap<String, Timeline>>,
}

impl Ticker {
    /// Follows `session` after a change: streams while it plays with members seated.
    pub fn track(&self, session: &Session) {
        let mut playing = self.playing.lock().unwrap_or_else(|p| p.into_inner());
        if session.timeline.is_playing && !session.members.is_empty() {
            playing.insert(session.id.clone(), session.timeline.clone());
        } else {
            playing.remove(&session.id);
        }
    }

    pub fn forget(&self, session_id: &str) {
        self.playing.lock().unwrap_or_else(|p| p.into_inner()).remove(session_id);
    }

    fn timeline(&self, session_id: &str) -> Option<Timeline> {
        self.playing.lock().unwrap_or_else(|p| p.into_inner()).get(session_id).cloned()
    }

    fn session_ids(&self) -> Vec<String> {
        self.playing.lock().unwrap_or_else(|p| p.into_inner()).keys().cloned().collect()
    }

    pub fn playing_count(&self) -> usize {
        self.playing.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Sends ticks every `LEGACY_TICK_MS` until the task is dropped.
    pub async fn run(app: Arc<AppState>) {
        let mut interval = tokio::time::interval(Duration::from_millis(app.config.legacy_tick_ms));
        interval.set_missed_tick_behavior(MissedTickBehavior::Skip);
        loop {
            interval.tick().await;
            for session_id in app.ticker.session_ids() {
                // Under the session's lock, a tick can never overtake the `pause` or `stop` that ended playback.
                let _guard = app.locks.lock(&session_id).await;
                let Some(timeline) = app.ticker.timeline(&session_id) else { continue };
                let now = now_ms();
                let tick = legacy_render::scroll_tick(&session_id, timeline.position_at(now), timeline.tempo, now);
                let room = rooms::legacy(&session_id);
                if let Err(err) = app.io.to(room).volatile().emit("scroll_tick", &tick).await {
                    tracing::debug!(session = %session_id, %err, "scroll_tick broadcast failed");
                }
            }
        }
    }
}
