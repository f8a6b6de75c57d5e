//! One session per socket: what a join means for the session the socket already sits in.

/// What the gateway must do before seating a socket in `target`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SeatChange {
    /// Not seated anywhere: just join.
    Join,
    /// Already in `target`: joining again re-sends the state and adds no member.
    Rejoin,
    /// Seated elsewhere: leave that session once the join has succeeded, so a refused join
    /// leaves the socket where it was.
    Move { leave: String },
}

pub fn plan_join(current: Option<&str>, target: &str) -> SeatChange {
    match current {
        None => SeatChange::Join,
        Some(current) if current == target => SeatChange::Rejoin,
        Some(current) => SeatChange::Move { leave: current.to_owned() },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_socket_sits_in_one_session_at_most() {
        assert_eq!(plan_join(None, "a"), SeatChange::Join);
        assert_eq!(plan_join(Some("a"), "a"), SeatChange::Rejoin);
        assert_eq!(plan_join(Some("a"), "b"), SeatChange::Move { leave: "a".into() });
    }
}
