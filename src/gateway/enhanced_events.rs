//! Handling the enhanced (colon-style) events.

use std::hash::{BuildHasher, RandomState};

use serde_json::{Value, json};
use socketioxide::{adapter::Adapter, extract::SocketRef};

use super::{grace::new_resume_token, respond::Responder, rooms, worker::Worker};
use crate::{
    clock::{now_ms, precise_now_ms},
    core::{Action, CoreError, Creation, Joiner, SessionSetup, resume},
    protocol::{
        enhanced::{CreateRequest, Request},
        payload,
    },
};

impl<A: Adapter> Worker<A> {
    pub(super) async fn handle_enhanced(&mut self, request: Request, responder: Responder<A>) {
        match request {
            Request::Create { setup, joiner } => self.create(setup, joiner, responder).await,
            Request::Join { session_id, joiner, create, resume_token } => {
                let joiner =
                    Joiner { resume_claim: resume_token.map(|t| resume::token_digest(&session_id, &t)), ..joiner };
                self.join_enhanced(session_id, joiner, create, responder).await
            }
            Request::Leave { session_id } => {
                let action = Action::Leave(crate::core::LeaveCause::Left);
                self.execute(&session_id, action, responder, |_, _| Value::Null).await;
            }
            Request::SessionList { band_id } => match self.app.store.sessions_of_band(&band_id).await {
                Ok(sessions) => {
                    let sessions: Vec<Value> = sessions.iter().map(payload::summary).collect();
                    let body = json!({ "bandId": band_id, "sessions": sessions });
                    match responder {
                        Responder::Enhanced { ack: Some(_), .. } => responder.succeed(&self.socket, body),
                        _ => self.emit("band:session_list", &body),
                    }
                }
                Err(err) => self.refuse(responder, &err),
            },
            Request::Session { session_id, action } => {
                // An enhanced start is scheduled START_LEAD_MS ahead, so every client hears of it
                // before its first beat. A legacy `play` starts now: legacy clients take the
                // position they are sent as the position at once.
                let action = match action {
                    Action::Start { tempo, time_signature, .. } => {
                        Action::Start { tempo, time_signature, lead_ms: self.app.config.start_lead_ms as i64 }
                    }
                    other => other,
                };
                self.execute(&session_id, action, responder, |_, _| Value::Null).await;
            }
            Request::ClockSync { t0 } => {
                // Normally answered as the packet arrives (see `inbox`); this is the queued fallback.
                let t1 = precise_now_ms();
                answer_clock_sync(&self.socket, responder, t0, t1);
            }
            Request::LatencyProbe { timestamp } => {
                self.emit("latency:response", &json!({ "clientTimestamp": timestamp, "serverTimestamp": now_ms() }));
                responder.succeed(&self.socket, Value::Null);
            }
            Request::MetricsSubscribe => {
                self.socket.join(rooms::METRICS);
                responder.succeed(&self.socket, Value::Null);
            }
            Request::MetricsUnsubscribe => {
                self.socket.leave(rooms::METRICS);
                responder.succeed(&self.socket, Value::Null);
            }
        }
    }

    /// `session:create`: a fresh session under a new id, with the creator seated as leader.
    async fn create(&mut self, request: CreateRequest, joiner: Joiner, responder: Responder<A>) {
        let max_allowed = self.app.config.max_session_members as usize;
        let max_members = request.max_members.unwrap_or(max_allowed);
        if max_members > max_allowed {
            let err = CoreError::Validation(format!("maxMembers must be at most {max_allowed}"));
            return self.refuse(responder, &err);
        }
        let session_id = new_session_id();
        let setup = SessionSetup {
            max_members,
            band_id: Some(request.band_id),
            session_name: Some(request.session_name),
            tempo: request.tempo,
            time_signature: request.time_signature,
        };
        let (joiner, token) = self.held_here(&session_id, joiner);
        let action = Action::Join { joiner: joiner.into(), wants_lead: true, creation: Creation::New(setup) };
        let id = session_id.clone();
        let answer = move |session: &_, now| json!({ "sessionId": id, "session": payload::state_sync(session, now), "resumeToken": token });
        self.join(&session_id, action, responder, answer).await;
    }

    /// `session:join`: a missing session is an error unless `create` is set.
    async fn join_enhanced(&mut self, session_id: String, joiner: Joiner, create: bool, responder: Responder<A>) {
        let creation = if create {
            Creation::IfMissing(SessionSetup::with_max_members(self.app.config.max_session_members as usize))
        } else {
            Creation::MustExist
        };
        let (joiner, token) = self.held_here(&session_id, joiner);
        let action = Action::Join { joiner: joiner.into(), wants_lead: false, creation };
        let me = self.socket_id.clone();
        let answer = move |session: &crate::core::Session, now| {
            json!({
                "session": payload::state_sync(session, now),
                "member": session.member(&me).map(payload::enhanced_member),
                "serverTime": now,
                "resumeToken": token,
            })
        };
        self.join(&session_id, action, responder, answer).await;
    }

    /// The joiner, as held by this instance, with a fresh resume token for its seat in
    /// `session_id`: the seat keeps the token's digest, the joiner gets the token in its answer.
    fn held_here(&self, session_id: &str, joiner: Joiner) -> (Joiner, String) {
        let token = new_resume_token();
        let resume_digest = Some(resume::token_digest(session_id, &token));
        (Joiner { instance: Some(self.app.server_id.clone()), resume_digest, ..joiner }, token)
    }
}

/// `clock:sync`: `{t0, t1, t2}` with t1 when the request arrived and t2 just before the answer
/// leaves, as the acknowledgement, or as `clock:sync_response` when the client asked for none.
pub fn answer_clock_sync<A: Adapter>(socket: &SocketRef<A>, responder: Responder<A>, t0: f64, t1: f64) {
    match responder {
        Responder::Enhanced { ack: Some(ack), .. } => {
            ack.send(&json!({ "t0": t0, "t1": t1, "t2": precise_now_ms() })).ok();
        }
        _ => {
            super::respond::emit(socket, "clock:sync_response", &json!({ "t0": t0, "t1": t1, "t2": precise_now_ms() }))
        }
    }
}

/// `session_<ms>_<random>`, as the enhanced protocol names new sessions.
fn new_session_id() -> String {
    let random = RandomState::new().hash_one(precise_now_ms().to_bits());
    format!("session_{}_{}", now_ms(), to_base36(random).chars().take(9).collect::<String>())
}

fn to_base36(mut n: u64) -> String {
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).expect("ascii digits")
}
