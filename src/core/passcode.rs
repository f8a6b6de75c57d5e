//! Session passcodes: a creator may lock a session, and joiners must then give the passcode.
//!
//! Only a digest is kept with the session (and so in Redis), salted with the session id so equal
//! passcodes of two sessions do not look alike. Guessing is slowed by the join rate limit.

use std::fmt;

use sha2::{Digest, Sha256};

/// A passcode as a client gave it; never printed.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Passcode(String);

impl Passcode {
    pub fn new(text: impl Into<String>) -> Self {
        Self(text.into())
    }

    /// The digest kept with the session `session_id`.
    pub fn digest(&self, session_id: &str) -> String {
        salted_digest(session_id, &self.0)
    }

    /// True when this is the passcode whose digest is `stored`, compared in constant time.
    pub fn unlocks(&self, session_id: &str, stored: &str) -> bool {
        same_secret(&self.digest(session_id), stored)
    }
}

/// SHA-256 of `secret` salted with the session id, in hex: how a session keeps a secret (a
/// passcode, a resume token) without keeping the secret itself.
pub fn salted_digest(session_id: &str, secret: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(session_id.as_bytes());
    hasher.update([0u8]);
    hasher.update(secret.as_bytes());
    hasher.finalize().iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Compares two secrets without stopping at the first difference, so the time taken tells nothing
/// of where they differ.
pub fn same_secret(given: &str, expected: &str) -> bool {
    given.len() == expected.len() && given.bytes().zip(expected.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

impl fmt::Debug for Passcode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Passcode(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_right_passcode_unlocks_its_own_session_only() {
        let stored = Passcode::new("open sesame").digest("s1");
        assert!(Passcode::new("open sesame").unlocks("s1", &stored));
        assert!(!Passcode::new("open sesame!").unlocks("s1", &stored));
        assert!(!Passcode::new("open sesame").unlocks("s2", &stored));
        assert_ne!(stored, Passcode::new("open sesame").digest("s2"), "salted by session");
    }

    #[test]
    fn debug_output_hides_the_passcode() {
        assert_eq!(format!("{:?}", Passcode::new("hunter2")), "Passcode(***)");
    }
}
