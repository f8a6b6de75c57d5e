//! Which instances are alive, and the members that went with the ones that are not.
//!
//! Every instance refreshes a key with a short expiry; a member records the instance holding its
//! connection. A member whose instance's key has expired can no longer hear anything, so the
//! survivors unseat it rather than let a ghost hold a seat or the lead.

use std::collections::HashMap;

use fred::prelude::{Expiration, KeysInterface, SortedSetsInterface};

use super::{RedisStore, unavailable};
use crate::core::CoreError;

pub async fn heartbeat(store: &RedisStore, ttl_ms: u64) {
    if !store.is_online() {
        return;
    }
    let key = store.keys.instance(&store.server_id);
    let result: Result<(), _> = store.client.set(key, "alive", Some(Expiration::PX(ttl_ms as i64)), None, false).await;
    if let Err(err) = result {
        store.went_offline(&err.to_string());
    }
}

/// `(session id, socket ids)` of members held by instances that are gone. This instance's own
/// members count only when `including_own` (at start-up, when none of them can be connected).
pub async fn lost_members(store: &RedisStore, including_own: bool) -> Result<Vec<(String, Vec<String>)>, CoreError> {
    if !store.is_online() {
        return Ok(Vec::new());
    }
    let ids: Vec<String> =
        store.client.zrange(store.keys.sessions(), 0, -1, None, false, None, false).await.map_err(unavailable)?;
    let mut alive: HashMap<String, bool> = HashMap::new();
    let mut lost = Vec::new();
    for id in ids {
        let (Some(session), _) = store.load(&id).await.map_err(unavailable)? else { continue };
        let mut gone = Vec::new();
        for member in &session.members {
            let Some(instance) = member.instance.as_deref() else { continue };
            if instance == store.server_id {
                if including_own {
                    gone.push(member.socket_id.clone());
                }
                continue;
            }
            if !alive.contains_key(instance) {
                let exists: i64 = store.client.exists(store.keys.instance(instance)).await.map_err(unavailable)?;
                alive.insert(instance.to_owned(), exists > 0);
            }
            if !alive[instance] {
                gone.push(member.socket_id.clone());
            }
        }
        if !gone.is_empty() {
            lost.push((id, gone));
        }
    }
    Ok(lost)
}
