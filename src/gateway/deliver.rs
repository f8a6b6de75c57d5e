//! Sends rendered emissions to their targets.

use socketioxide::{SocketIo, adapter::Adapter, extract::SocketRef};

use super::rooms;
use crate::protocol::{Emission, Target};

/// Sends `emissions` about session `session_id` in order. `sender` is absent for the server's own
/// changes, which address no sender.
pub async fn deliver<A: Adapter>(
    io: &SocketIo<A>,
    sender: Option<&SocketRef<A>>,
    session_id: &str,
    emissions: &[Emission],
) {
    for emission in emissions {
        let Emission { target, event, data } = emission;
        let result = match target {
            Target::Sender => match sender {
                Some(sender) => sender.emit(*event, data).map_err(|e| e.to_string()),
                None => Ok(()),
            },
            Target::Room(vocabulary) => {
                io.to(rooms::session(session_id, *vocabulary)).emit(*event, data).await.map_err(|e| e.to_string())
            }
            Target::Socket(id) => io.to(rooms::socket(id)).emit(*event, data).await.map_err(|e| e.to_string()),
        };
        if let Err(err) = result {
            // A member whose connection just closed cannot be reached; its disconnect is on its way.
            tracing::debug!(event, ?target, %err, "emit failed");
        }
    }
}
