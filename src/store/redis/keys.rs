//! Redis key names, all under `REDIS_KEY_PREFIX`.

#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(prefix: &str) -> Self {
        Self { prefix: prefix.to_owned() }
    }

    /// Hash `{rev, state}` of one session.
    pub fn session(&self, id: &str) -> String {
        format!("{}session:{id}", self.prefix)
    }

    /// Sorted set of session ids scored by last activity: counting and the idle sweep.
    pub fn sessions(&self) -> String {
        format!("{}sessions", self.prefix)
    }

    /// Set of a band's session ids, for discovery.
    pub fn band(&self, band_id: &str) -> String {
        format!("{}band:{band_id}", self.prefix)
    }

    /// An instance's heartbeat; it expires when the instance stops refreshing it.
    pub fn instance(&self, server_id: &str) -> String {
        format!("{}instance:{server_id}", self.prefix)
    }

    /// Channel announcing `<server id>|<session id>` after every change.
    pub fn changes(&self) -> String {
        format!("{}changes", self.prefix)
    }

    /// Channel carrying each change's announcement to the members on every instance (JSON).
    pub fn announcements(&self) -> String {
        format!("{}announcements", self.prefix)
    }

    /// Prefix of the Socket.IO adapter's channels.
    pub fn adapter(&self) -> String {
        format!("{}socket.io", self.prefix)
    }
}
