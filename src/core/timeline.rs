//! The song timeline: position and beat as functions of wall-clock time.
//!
//! Position is song milliseconds and runs at the rate of the clock while playing, whatever the
//! tempo: `position(now) = anchor_position + (now - anchor_time)`. Reading it never changes it, so
//! every reader at any moment computes the same number. Beats are counted on a separate timeline
//! re-anchored at every tempo change, so the beat count stays continuous when the tempo moves,
//! including through a linear tempo ramp, where the beat count is the integral of the tempo.

use serde::{Deserialize, Serialize};

use super::Millis;

/// Default tempo of a new session, in beats per minute.
pub const DEFAULT_TEMPO: f64 = 120.0;
/// Tempo bounds in beats per minute; requests outside them are refused before reaching the core.
pub const MIN_TEMPO: f64 = 20.0;
pub const MAX_TEMPO: f64 = 400.0;

/// A linear tempo change from `from` to `to` over `duration` ms, starting at `start`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Ramp {
    pub from: f64,
    pub to: f64,
    pub start: Millis,
    pub duration: f64,
}

impl Ramp {
    fn tempo_at(&self, now: Millis) -> f64 {
        let progress = ((now - self.start) as f64 / self.duration).clamp(0.0, 1.0);
        self.from + (self.to - self.from) * progress
    }

    /// Beats from `start` to `now` (clamped to the ramp), the integral of the tempo over that span.
    fn beats_until(&self, now: Millis) -> f64 {
        let elapsed = ((now - self.start) as f64).clamp(0.0, self.duration);
        (self.from * elapsed + (self.to - self.from) * elapsed * elapsed / (2.0 * self.duration)) / 60_000.0
    }

    fn end(&self) -> Millis {
        self.start + self.duration.ceil() as Millis
    }
}

/// Play state, tempo and the anchors position and beat are computed from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Timeline {
    /// Beats per minute: the target tempo when a ramp is under way.
    pub tempo: f64,
    /// A tempo ramp under way, if any; it starts at `anchor_time`.
    #[serde(default)]
    pub ramp: Option<Ramp>,
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
        Self {
            tempo: DEFAULT_TEMPO,
            ramp: None,
            is_playing: false,
            anchor_position: 0.0,
            anchor_beat: 0.0,
            anchor_time: 0,
        }
    }
}

impl Timeline {
    /// Song position in milliseconds at `now`. Before a scheduled start it holds where it will start.
    pub fn position_at(&self, now: Millis) -> f64 {
        if self.is_playing && now > self.anchor_time {
            self.anchor_position + (now - self.anchor_time) as f64
        } else {
            self.anchor_position
        }
    }

    /// When playback started or will start (a start may be scheduled ahead).
    pub fn started_at(&self) -> Millis {
        self.anchor_time
    }

    /// The tempo sounding at `now`: on a ramp, somewhere between its ends.
    pub fn tempo_at(&self, now: Millis) -> f64 {
        match &self.ramp {
            Some(ramp) if self.is_playing && now < ramp.end() => ramp.tempo_at(now),
            _ => self.tempo,
        }
    }

    /// Beats elapsed since the timeline's start (fractional) at `now`.
    pub fn beat_at(&self, now: Millis) -> f64 {
        if !self.is_playing || now <= self.anchor_time {
            return self.anchor_beat;
        }
        match &self.ramp {
            Some(ramp) => {
                let after_ramp = (now - ramp.end()).max(0) as f64;
                self.anchor_beat + ramp.beats_until(now) + after_ramp * self.tempo / 60_000.0
            }
            None => self.anchor_beat + (now - self.anchor_time) as f64 * self.tempo / 60_000.0,
        }
    }

    /// Moves the anchors to `now`, so later changes start from the current position and beat.
    /// A ramp still under way is cut at `now` and goes on from there, so its tempo and beats
    /// stay continuous; a paused timeline takes the ramp's target at once.
    fn reanchor(&mut self, now: Millis) {
        if self.is_playing && now < self.anchor_time {
            // A start is scheduled ahead: nothing has moved yet, the anchors stay at the start.
            return;
        }
        self.anchor_position = self.position_at(now);
        self.anchor_beat = self.beat_at(now);
        self.ramp = match self.ramp.take() {
            Some(ramp) if self.is_playing && now < ramp.end() => Some(Ramp {
                from: ramp.tempo_at(now),
                to: ramp.to,
                start: now,
                duration: ramp.duration - (now - ramp.start) as f64,
            }),
            _ => None,
        };
        self.anchor_time = now;
    }

    pub fn play(&mut self, now: Millis) {
        self.play_at(now, now);
    }

    /// Starts playing at `start` (not before `now`), so every device can begin on the same instant.
    pub fn play_at(&mut self, start: Millis, now: Millis) {
        self.reanchor(now);
        self.ramp = None;
        self.is_playing = true;
        self.anchor_time = start.max(now);
    }

    /// Server time (fractional ms) at which beat count `beat` is reached while playing; `None`
    /// when stopped. Inverts [`Timeline::beat_at`], through a ramp by solving its quadratic.
    pub fn time_of_beat(&self, beat: f64) -> Option<f64> {
        if !self.is_playing {
            return None;
        }
        let start = self.anchor_time as f64;
        let wanted = (beat - self.anchor_beat).max(0.0) * 60_000.0;
        let Some(ramp) = &self.ramp else { return Some(start + wanted / self.tempo) };
        let ramp_beats = ramp.beats_until(ramp.end()) * 60_000.0;
        if wanted > ramp_beats {
            return Some(ramp.end() as f64 + (wanted - ramp_beats) / ramp.to);
        }
        // from·e + (to − from)·e² / 2D = wanted, for the elapsed e within the ramp.
        let a = (ramp.to - ramp.from) / (2.0 * ramp.duration);
        let elapsed = if a.abs() < 1e-12 {
            wanted / ramp.from
        } else {
            (-ramp.from + (ramp.from * ramp.from + 4.0 * a * wanted).sqrt()) / (2.0 * a)
        };
        Some(ramp.start as f64 + elapsed)
    }

    /// Stops and rewinds to the start of the song.
    pub fn stop(&mut self, now: Millis) {
        self.is_playing = false;
        self.ramp = None;
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

    /// Corrects the position to `position` (a leader re-syncing everyone): the beat count moves
    /// by the correction at the tempo sounding now, so it stays continuous. A seek, by contrast,
    /// counts beats from the song's start, which after a tempo change would renumber every bar.
    pub fn correct_position(&mut self, position: f64, now: Millis) {
        self.reanchor(now);
        let correction = position - self.anchor_position;
        self.anchor_beat =
            (self.anchor_beat + correction * self.tempo_at(now.max(self.anchor_time)) / 60_000.0).max(0.0);
        self.anchor_position = position;
    }

    pub fn set_tempo(&mut self, tempo: f64, now: Millis) {
        self.reanchor(now);
        self.ramp = None;
        self.tempo = tempo;
    }

    /// Moves the tempo linearly from the tempo sounding now to `tempo` over `duration` ms.
    pub fn ramp_tempo(&mut self, tempo: f64, duration: f64, now: Millis) {
        if duration <= 0.0 || !self.is_playing {
            return self.set_tempo(tempo, now);
        }
        let from = self.tempo_at(now);
        self.reanchor(now);
        // The ramp starts with the anchors: now, or at a start scheduled ahead.
        self.ramp = Some(Ramp { from, to: tempo, start: self.anchor_time, duration });
        self.tempo = tempo;
    }

    pub fn pause(&mut self, now: Millis) {
        self.reanchor(now);
        self.is_playing = false;
        self.ramp = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_position_correction_keeps_the_beat_count_after_a_tempo_change() {
        let mut timeline = Timeline::default();
        timeline.play(0);
        timeline.set_tempo(60.0, 60_000);
        assert_eq!(timeline.beat_at(60_000), 120.0);
        // The leader re-syncs to where everyone already is: nothing moves.
        timeline.correct_position(60_000.0, 60_000);
        assert_eq!((timeline.position_at(60_000), timeline.beat_at(60_000)), (60_000.0, 120.0));
        // A correction of a second at 60 BPM is one beat.
        timeline.correct_position(61_000.0, 60_000);
        assert_eq!(timeline.beat_at(60_000), 121.0);
        assert_eq!(timeline.beat_at(62_000), 123.0);
        // A seek counts from the song's start instead.
        timeline.seek(0.0, 62_000);
        assert_eq!(timeline.beat_at(62_000), 0.0);
    }

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
    fn a_ramp_moves_the_tempo_linearly_and_counts_beats_as_its_integral() {
        let mut timeline = Timeline::default();
        timeline.play(0);
        // From 120 to 180 BPM over 2 s.
        timeline.ramp_tempo(180.0, 2_000.0, 1_000);
        assert_eq!(timeline.tempo_at(1_000), 120.0);
        assert_eq!(timeline.tempo_at(2_000), 150.0);
        assert_eq!(timeline.tempo_at(3_000), 180.0);
        assert_eq!(timeline.tempo_at(9_000), 180.0);
        // 2 beats before the ramp; during it the mean tempo is 150 BPM: 5 beats in 2 s.
        assert!((timeline.beat_at(3_000) - 7.0).abs() < 1e-9);
        // After it, 3 beats a second.
        assert!((timeline.beat_at(4_000) - 10.0).abs() < 1e-9);
        assert_eq!(timeline.position_at(4_000), 4_000.0, "position ignores tempo");
    }

    #[test]
    fn beats_are_continuous_when_a_ramp_is_interrupted() {
        let mut timeline = Timeline::default();
        timeline.play(0);
        timeline.ramp_tempo(60.0, 4_000.0, 0);
        let before = timeline.beat_at(1_000);
        let tempo_before = timeline.tempo_at(1_000);
        timeline.seek(500.0, 1_000);
        timeline.set_tempo(100.0, 1_000);
        assert_eq!(tempo_before, 105.0);
        timeline.ramp_tempo(60.0, 4_000.0, 1_000);
        assert_eq!(timeline.tempo_at(1_000), 100.0, "a new ramp starts from the tempo sounding now");
        let mut restarted = Timeline::default();
        restarted.play(0);
        restarted.ramp_tempo(60.0, 4_000.0, 0);
        restarted.reanchor(1_000);
        assert!((restarted.beat_at(1_000) - before).abs() < 1e-9, "cutting a ramp keeps the beat");
        assert!((restarted.beat_at(3_000) - Timeline::default_ramp_beats(3_000)).abs() < 1e-9);
    }

    impl Timeline {
        fn default_ramp_beats(now: Millis) -> f64 {
            let mut timeline = Timeline::default();
            timeline.play(0);
            timeline.ramp_tempo(60.0, 4_000.0, 0);
            timeline.beat_at(now)
        }
    }

    #[test]
    fn a_start_scheduled_ahead_holds_position_and_beat_until_it_comes() {
        let mut timeline = Timeline::default();
        timeline.seek(1_000.0, 0);
        timeline.play_at(500, 100);
        assert_eq!(timeline.position_at(300), 1_000.0);
        assert_eq!(timeline.position_at(700), 1_200.0);
        assert_eq!(timeline.started_at(), 500);
        assert_eq!(timeline.time_of_beat(timeline.beat_at(500)), Some(500.0));
    }

    #[test]
    fn time_of_beat_inverts_beat_at_before_during_and_after_a_ramp() {
        let mut timeline = Timeline::default();
        timeline.play(0);
        timeline.ramp_tempo(200.0, 3_000.0, 1_000);
        // Times from the last change on: earlier ones are history the timeline no longer holds.
        for t in [1_000, 1_700, 2_999, 4_000, 6_500] {
            let beat = timeline.beat_at(t);
            let back = timeline.time_of_beat(beat).unwrap();
            assert!((back - t as f64).abs() < 1e-6, "t={t} beat={beat} back={back}");
        }
        let mut down = Timeline::default();
        down.play(0);
        down.ramp_tempo(40.0, 2_000.0, 0);
        for t in [0, 500, 1_999, 3_000] {
            let back = down.time_of_beat(down.beat_at(t)).unwrap();
            assert!((back - t as f64).abs() < 1e-6, "t={t} back={back}");
        }
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
