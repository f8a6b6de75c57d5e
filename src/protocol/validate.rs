//! Typed reads of a JSON payload, each failing with a message that names the field.
//!
//! Adapters read every field through [`Fields`], so a bad payload is refused with `VALIDATION`
//! before anything reaches the core.

use serde_json::{Map, Value};

use super::Limits;
use crate::core::{CoreError, Passcode};

pub use crate::core::timeline::{MAX_TEMPO, MIN_TEMPO};
/// Longest fade or ramp accepted, in milliseconds.
pub const MAX_FADE_MS: f64 = 600_000.0;
/// Furthest song position accepted (24 hours), in milliseconds, and the largest beat position.
/// Past some point the beat count a position implies stops being a number JSON can carry (a
/// position of 1e307 ms is an infinite beat), and a stored session holding one could not be read
/// back; no song is a day long.
pub const MAX_POSITION_MS: f64 = 86_400_000.0;

fn invalid(message: String) -> CoreError {
    CoreError::Validation(message)
}

/// The fields of an object payload.
pub struct Fields<'a> {
    map: &'a Map<String, Value>,
    limits: Limits,
}

impl<'a> Fields<'a> {
    /// Refuses anything but a JSON object.
    pub fn of(payload: &'a Value, limits: Limits) -> Result<Self, CoreError> {
        match payload {
            Value::Object(map) => Ok(Self { map, limits }),
            Value::Null => Err(invalid("Payload required: expected an object".into())),
            other => Err(invalid(format!("Payload must be an object, not {}", kind(other)))),
        }
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    fn get(&self, name: &str) -> Option<&'a Value> {
        self.map.get(name).filter(|v| !v.is_null())
    }

    pub fn string(&self, name: &str, max_chars: usize) -> Result<String, CoreError> {
        self.optional_string(name, max_chars)?.ok_or_else(|| invalid(format!("{name} is required")))
    }

    pub fn optional_string(&self, name: &str, max_chars: usize) -> Result<Option<String>, CoreError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::String(s)) if s.chars().count() > max_chars => {
                Err(invalid(format!("{name} is too long (at most {max_chars} characters)")))
            }
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(invalid(format!("{name} must be a string, not {}", kind(other)))),
        }
    }

    /// A session passcode (`passcode`), bounded like a name; an empty one is no passcode.
    pub fn passcode(&self) -> Result<Option<Passcode>, CoreError> {
        Ok(self.optional_string("passcode", self.limits.max_name)?.filter(|p| !p.is_empty()).map(Passcode::new))
    }

    /// A non-empty, trimmed name such as a session id or display name.
    pub fn name(&self, name: &str) -> Result<String, CoreError> {
        self.optional_name(name)?.ok_or_else(|| invalid(format!("{name} is required")))
    }

    pub fn optional_name(&self, name: &str) -> Result<Option<String>, CoreError> {
        match self.optional_string(name, self.limits.max_name)? {
            Some(s) if s.trim().is_empty() => Err(invalid(format!("{name} must not be empty"))),
            Some(s) => Ok(Some(s.trim().to_owned())),
            None => Ok(None),
        }
    }

    pub fn session_id(&self) -> Result<String, CoreError> {
        self.name("sessionId")
    }

    pub fn message(&self, name: &str) -> Result<String, CoreError> {
        self.string(name, self.limits.max_message)
    }

    pub fn number(&self, name: &str) -> Result<f64, CoreError> {
        self.optional_number(name)?.ok_or_else(|| invalid(format!("{name} is required")))
    }

    pub fn optional_number(&self, name: &str) -> Result<Option<f64>, CoreError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Number(n)) => n
                .as_f64()
                .filter(|f| f.is_finite())
                .map(Some)
                .ok_or_else(|| invalid(format!("{name} is not a usable number"))),
            Some(other) => Err(invalid(format!("{name} must be a number, not {}", kind(other)))),
        }
    }

    pub fn optional_bool(&self, name: &str) -> Result<Option<bool>, CoreError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(other) => Err(invalid(format!("{name} must be a boolean, not {}", kind(other)))),
        }
    }

    pub fn tempo(&self, name: &str) -> Result<f64, CoreError> {
        let tempo = self.number(name)?;
        if !(MIN_TEMPO..=MAX_TEMPO).contains(&tempo) {
            return Err(invalid(format!("{name} must be between {MIN_TEMPO} and {MAX_TEMPO} BPM, got {tempo}")));
        }
        Ok(tempo)
    }

    /// A song position in milliseconds (or a beat position): from zero to [`MAX_POSITION_MS`].
    pub fn position(&self, name: &str) -> Result<f64, CoreError> {
        let position = self.number(name)?;
        if position < 0.0 {
            return Err(invalid(format!("{name} must not be negative, got {position}")));
        }
        if position > MAX_POSITION_MS {
            return Err(invalid(format!("{name} must be at most {MAX_POSITION_MS} (24 hours in ms), got {position}")));
        }
        Ok(position)
    }

    pub fn fade_time(&self, name: &str) -> Result<f64, CoreError> {
        let fade = self.optional_number(name)?.unwrap_or(0.0);
        if !(0.0..=MAX_FADE_MS).contains(&fade) {
            return Err(invalid(format!("{name} must be between 0 and {MAX_FADE_MS} ms, got {fade}")));
        }
        Ok(fade)
    }

    /// A role name: `"leader"` or `"follower"`.
    pub fn role(&self, name: &str) -> Result<Option<bool>, CoreError> {
        match self.optional_string(name, 16)?.as_deref() {
            None => Ok(None),
            Some("leader") => Ok(Some(true)),
            Some("follower") => Ok(Some(false)),
            Some(other) => Err(invalid(format!("{name} must be \"leader\" or \"follower\", not \"{other}\""))),
        }
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn fields(v: &Value) -> Result<Fields<'_>, CoreError> {
        Fields::of(v, Limits::default())
    }

    #[test]
    fn non_objects_are_refused() {
        for payload in [json!(null), json!(3), json!("demo"), json!([1])] {
            assert!(matches!(fields(&payload), Err(CoreError::Validation(_))), "{payload}");
        }
    }

    #[test]
    fn tempo_bounds_are_inclusive_and_strings_are_not_numbers() {
        assert_eq!(fields(&json!({"t": 20})).unwrap().tempo("t").unwrap(), 20.0);
        assert_eq!(fields(&json!({"t": 400})).unwrap().tempo("t").unwrap(), 400.0);
        assert!(fields(&json!({"t": 19.99})).unwrap().tempo("t").is_err());
        assert!(fields(&json!({"t": 401})).unwrap().tempo("t").is_err());
        let err = fields(&json!({"t": "120"})).unwrap().tempo("t").unwrap_err();
        assert_eq!(err.to_string(), "t must be a number, not a string");
    }

    #[test]
    fn names_are_bounded_trimmed_and_never_empty() {
        let long = "x".repeat(65);
        assert!(fields(&json!({"sessionId": long})).unwrap().session_id().is_err());
        assert!(fields(&json!({"sessionId": "  "})).unwrap().session_id().is_err());
        assert_eq!(fields(&json!({"sessionId": " demo "})).unwrap().session_id().unwrap(), "demo");
        assert_eq!(fields(&json!({})).unwrap().session_id().unwrap_err().to_string(), "sessionId is required");
    }

    #[test]
    fn positions_are_between_zero_and_a_day() {
        assert!(fields(&json!({"p": -1})).unwrap().position("p").is_err());
        assert_eq!(fields(&json!({"p": 0})).unwrap().position("p").unwrap(), 0.0);
        assert_eq!(fields(&json!({"p": 86_400_000})).unwrap().position("p").unwrap(), MAX_POSITION_MS);
        let far = fields(&json!({"p": 1e307})).unwrap().position("p").unwrap_err().to_string();
        assert!(far.contains("at most 86400000"), "{far}");
    }
}
