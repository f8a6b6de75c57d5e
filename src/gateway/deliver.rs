//! Sends a change's rendered emissions: the sender's answer straight to it, everything else to the
//! session's members through [`crate::delivery`], here and on every other instance.

use std::sync::Arc;

use socketioxide::{adapter::Adapter, extract::SocketRef};

use super::respond;
use crate::{
    delivery::{self, Announcement, Outgoing},
    protocol::{Emission, Target},
    state::AppState,
    store::{Applied, Backend},
    telemetry,
};

/// Sends `emissions`, rendered from `applied`, in order: those for `sender` to it at once, the
/// others to the members ([`announce`]). When the change `just_seated` the sender, its answer
/// (the join's snapshot) goes out through the session's deliveries, which start it listening.
pub async fn deliver<A: Adapter>(
    app: &Arc<AppState>,
    sender: &SocketRef<A>,
    applied: &Applied,
    emissions: &[Emission],
    just_seated: bool,
) {
    let sender_id = sender.id.as_str();
    let answer = || emissions.iter().filter(|e| e.target == Target::Sender);
    let answered = just_seated && {
        let session = &applied.session;
        let answer: Vec<Outgoing> = answer().map(|e| Outgoing::to_socket(e, sender_id)).collect();
        app.deliveries.seated(&session.id, sender_id, session.created_at, applied.revision, &answer)
    };
    if !answered {
        for emission in answer() {
            respond::emit(sender, emission.event, &emission.data);
        }
    }
    announce(app, Some(sender_id), applied, emissions).await;
}

/// Announces `applied` to the session's members, here and on every other instance, with the
/// `emissions` not meant for `sender` alone. Every change with a revision is announced, even one
/// with nothing to say: the other instances must not wait for a revision that never comes.
pub async fn announce(app: &Arc<AppState>, sender: Option<&str>, applied: &Applied, emissions: &[Emission]) {
    let mut events = Vec::new();
    for emission in emissions {
        telemetry::event_emitted(emission.event);
        events.extend(Outgoing::from_emission(emission, sender));
    }
    if events.is_empty() && applied.revision.is_none() {
        return;
    }
    // Shared, not copied, with the session's order while it waits there.
    let announcement = Arc::new(Announcement {
        origin: app.server_id.clone(),
        session_id: applied.session.id.clone(),
        epoch: applied.session.created_at,
        revision: applied.revision,
        events,
    });
    let gap = app.deliveries.submit(&announcement);
    delivery::wait::watch(app, &announcement.session_id, gap);
    // Cut off from the other instances, the change is this instance's alone until the write-back.
    if app.store.backend() == Backend::Connected {
        app.store.share(&announcement).await;
    }
}
