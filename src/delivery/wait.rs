//! Waiting out a missing revision: when it does not come within `REORDER_WAIT_MS`, the members
//! here get the session's current state in its place.

use std::sync::Arc;

use super::{Gap, GapCheck};
use crate::{clock::now_ms, state::AppState, telemetry};

/// Starts the wait `gap` asks for, if any, for `session_id`.
pub fn watch(app: &Arc<AppState>, session_id: &str, gap: Gap) {
    let Gap::WaitFor(wait) = gap else { return };
    let app = app.clone();
    let session_id = session_id.to_owned();
    tokio::spawn(async move {
        let mut wait = wait;
        loop {
            tokio::time::sleep(wait).await;
            match app.deliveries.check_gap(&session_id) {
                GapCheck::Filled => {
                    telemetry::delivery_gap("filled");
                    return;
                }
                GapCheck::WaitFor(left) => wait = left,
                GapCheck::Resync => {
                    telemetry::delivery_gap("replaced");
                    let current = app.store.get_revised(&session_id).await;
                    let current = match &current {
                        Ok(Some((session, revision))) => Some((session, *revision)),
                        // Gone, or Redis cannot say: what waits goes as it is.
                        Ok(None) | Err(_) => None,
                    };
                    match app.deliveries.resync(&session_id, current, now_ms()) {
                        Gap::WaitFor(left) => wait = left,
                        Gap::None => return,
                    }
                }
            }
        }
    });
}
