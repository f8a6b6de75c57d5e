//! The song timeline: position and beat as functions of wall-clock time.
//!
//! Position is song milliseconds and runs at the rate of the clock while playing, whatever the
//! tempo: `position(now) = anchor_position + (now - anchor_time)`. Reading it never changes it, so
//! every reader at any moment computes the same number. Beats are counted on a separate timeline
//! re-anchored at every tempo change, so the beat count stays continuous when the tempo moves.

use serde::{Deserialize, Serialize};

use super::Millis;

/// Default tempo of a new session, in beats per minute.
pub const DEFAULT_TEMPO: f64 = 120.0;

/// Play state, tempo and the anchors position and beat are computed from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Timeline {
    /// Beats per minute.
    pub tempo: f64,
    pub is_playing: bool,
    /// Song position at `anchor_time`.
    anchor_position: f64,
    /// Beats elapsed (fractional) at `anchor_time`.
    anchor_beat: f64,
    /// Wall-clock time of the last change to play state, position or tempo.
    anchor_time: Millis,
}

impl Default for Timeline {
    fn default() -> Self {
        Self { tempo: DEFAULT_TEMPO, is_playing: false, anchor_position: 0.0, anchor_beat: 0.0, anchor_time: 0 }
    }
}

impl Timeline {
    /// Song position in milliseconds at `now`. Never negative, even for a clock read before the anchor.
    pub fn position_at(&self, now: Millis) -> f64 {
        if self.is_playing {
            (self.anchor_position + (now - self.anchor_time) as f64).max(0.0)
        } else {
            self.anchor_position
        }
    }

    /// Beats elapsed since the timeline's start (fractional) at `now`.
    pub fn beat_at(&self, now: Millis) -> f64 {
        if self.is_playing {
            self.anchor_beat + (now - self.anchor_time) as f64 * self.tempo / 60_000.0
        } else {
            self.anchor_beat
        }
    }

    /// Moves the anchors to `now`, so later changes start from the current position and beat.
    fn reanchor(&mut self, now: Millis) {
        self.anchor_position = self.position_at(now);
        self.anchor_beat = self.beat_at(now);
        self.anchor_time = now;
    }

    pub fn play(&mut self, now: Millis) {
        self.reanchor(now);
        self.is_playing = true;
    }

    pub fn pause(&mut self, now: Millis) {
        self.reanchor(now);
        self.is_playing = false;
    }

    /// Stops and rewinds to the start of the song.
    pub fn stop(&mut self, now: Millis) {
        self.is_playing = false;
        self.anchor_position = 0.0;
        self.anchor_beat = 0.0;
        self.anchor_time = now;
    }

    /// Jumps to `position`; the beat count follows at the current tempo.
    pub fn seek(&mut self, position: f64, now: Millis) {
        self.reanchor(now);
        self.anchor_position = position;
        self.anchor_beat = position * self.tempo / 60_000.0;
    }

    pub fn set_tempo(&mut self, tempo: f64, now: Millis) {
        self.reanchor(now);
        self.tempo = tempo;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn position_follows_the_clock_while_playing_and_holds_while_paused() {
        let mut timeline = Timeline::default();
        timeline.play(1_000);
        assert_eq!(timeline.position_at(1_000), 0.0);
        assert_eq!(timeline.position_at(3_500), 2_500.0);
        timeline.pause(4_000);
        assert_eq!(timeline.position_at(4_000), 3_000.0);
        assert_eq!(timeline.position_at(60_000), 3_000.0);
        timeline.play(70_000);
        assert_eq!(timeline.position_at(70_250), 3_250.0);
    }

    #[test]
    fn reading_the_position_twice_gives_the_same_number() {
        let mut timeline = Timeline::default();
        timeline.play(0);
        let first = timeline.position_at(12_345);
        assert_eq!(first, timeline.position_at(12_345));
    }

    #[test]
    fn tempo_does_not_change_the_rate_of_position_but_keeps_beats_continuous() {
        let mut timeline = Timeline::default();
        timeline.play(0);
        // 120 BPM: 2 beats per second.
        assert_eq!(timeline.beat_at(1_000), 2.0);
        timeline.set_tempo(60.0, 1_000);
        assert_eq!(timeline.beat_at(1_000), 2.0, "no jump at the change");
        assert_eq!(timeline.beat_at(2_000), 3.0);
        assert_eq!(timeline.position_at(2_000), 2_000.0);
    }

    #[test]
    fn stop_rewinds_and_seek_jumps() {
        let mut timeline = Timeline::default();
        timeline.play(0);
        timeline.seek(10_000.0, 500);
        assert_eq!(timeline.position_at(1_500), 11_000.0);
        timeline.stop(2_000);
        assert!(!timeline.is_playing);
        assert_eq!(timeline.position_at(9_000), 0.0);
        assert_eq!(timeline.beat_at(9_000), 0.0);
    }
}
