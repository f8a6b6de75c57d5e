//! Sends rendered emissions to their targets.

use socketioxide::{SocketIo, adapter::Adapter, extract::SocketRef};

use super::rooms;
use crate::{
    protocol::{Emission, Target},
    telemetry,
};

/// Sends `emissions` about session `session_id` in order. `sender` is absent for the server's own
/// changes, which address no sender. With `local_only` (the other instances are unreachable) rooms
/// get the emissions on this instance only; an emission the adapter fails to share is also
/// delivered here, so an outage between instances never silences a room's local members.
pub async fn deliver<A: Adapter>(
    io: &SocketIo<A>,
    sender: Option<&SocketRef<A>>,
    session_id: &str,
    emissions: &[Emission],
    local_only: bool,
) {
    // A held seat can end while the server shuts down: its leave is stored, and told no one.
    let Some(namespace) = rooms::namespace(io) else { return };
    let to = |room: String| if local_only { namespace.clone().local().to(room) } else { namespace.clone().to(room) };
    for emission in emissions {
        let Emission { target, event, data } = emission;
        telemetry::event_emitted(event);
        let result = match target {
            Target::Sender => match sender {
                Some(sender) => sender.emit(*event, data).map_err(|e| e.to_string()),
                None => Ok(()),
            },
            Target::Room(vocabulary) => {
                let room = rooms::session(session_id, *vocabulary);
                match to(room.clone()).emit(*event, data).await {
                    Err(err) if !local_only => {
                        tracing::debug!(event, %err, "room broadcast not shared with other instances; delivering locally");
                        namespace.clone().local().to(room).emit(*event, data).await.map_err(|e| e.to_string())
                    }
                    other => other.map_err(|e| e.to_string()),
                }
            }
            Target::Socket(id) => to(rooms::socket(id)).emit(*event, data).await.map_err(|e| e.to_string()),
        };
        if let Err(err) = result {
            // A member whose connection just closed cannot be reached; its disconnect is on its way.
            tracing::debug!(event, ?target, %err, "emit failed");
        }
    }
}
