//! Changes the server makes on its own, with no socket behind them: unseating the members of an
//! instance that died, and having local members check their seats in a session rewritten after a
//! Redis outage.

use std::sync::Arc;

use socketioxide::{SocketIo, adapter::Adapter};

use super::{
    deliver::announce,
    inbox::{Inbound, Inbox},
    rooms,
};
use crate::{
    clock::now_ms,
    core::{Action, Command, Vocabulary},
    protocol::{self, Scene},
    state::AppState,
};

/// The name server-made changes carry as their author.
const SERVER: &str = "server";

/// Unseats `sockets` from `session_id` and tells everyone left, on every instance.
pub async fn evict(app: &Arc<AppState>, session_id: &str, sockets: Vec<String>, reason: &str) {
    let _guard = app.locks.lock(session_id).await;
    let now = now_ms();
    let count = sockets.len();
    let command = Command { by: SERVER.into(), action: Action::Evict { sockets, reason: reason.into() } };
    let applied = match app.store.apply(session_id, &command, now).await {
        Ok(applied) => applied,
        Err(err) => {
            tracing::warn!(session = %session_id, %err, "could not unseat lost members");
            return;
        }
    };
    tracing::info!(session = %session_id, members = count, reason, "unseated members of a lost instance");
    app.ticker.track(&applied.session);
    let scene = Scene { session: &applied.session, by: SERVER, sender_vocabulary: Vocabulary::Legacy, now };
    let emissions = protocol::render(&applied.outcomes, &scene);
    announce(app, None, &applied, &emissions).await;
}

/// Asks every local socket in `session_id`'s rooms to check its seat against the stored session
/// (each socket's worker does, in turn with its own events).
pub fn check_seats<A: Adapter>(io: &SocketIo<A>, session_id: &str) {
    let rooms = [Vocabulary::Legacy, Vocabulary::Enhanced].map(|vocabulary| rooms::session(session_id, vocabulary));
    let Some(namespace) = rooms::namespace(io) else { return };
    for socket in namespace.local().within(rooms).sockets() {
        if let Some(inbox) = socket.extensions.get::<Inbox<A>>() {
            inbox.queue.push_notice(Inbound::CheckSeat(session_id.into()));
        }
    }
}
