/**
 * bandsync-clock.js: precise clock sync and beat prediction for bandsync-server clients.
 *
 * A dependency-free ES module (browsers, React Native, Node). It speaks the enhanced protocol
 * (PROTOCOL.md section 4) over any socket.io-client 4.x socket, or over anything shaped like one.
 *
 *     import { BandSyncClock } from "./bandsync-clock.js";
 *     const clock = new BandSyncClock({ socket });   // syncs on every connect, follows the session
 *     const ack = await socket.timeout(5000).emitWithAck("session:join", { sessionId, create: true });
 *     clock.applySessionState(ack.session);           // optional: a late joiner learns play state at once
 *     for (const b of clock.nextBeats(clock.now(), 4)) schedule(b.localTime, b.beat === 1);
 *
 * ## Clock offset
 * `offset` is server time minus local time (ms): serverTime = localTime + offset.
 * On connect the clock sends a burst of `burstSize` (32) `clock:sync {t0}` requests, one after the
 * other, `burstGapMs` apart, then every `intervalMs` (2000) a small burst of `periodicSamples` (3).
 * Each ack `{t0, t1, t2}` with the local receive time t3 gives an NTP sample:
 * offset = ((t1 − t0) + (t2 − t3)) / 2, rtt = (t3 − t0) − (t2 − t1). The last `windowSize` (64)
 * samples are kept (see estimateOffset for the details):
 * - RTT outliers are rejected: only the lowest-RTT samples count (the best quarter, at least 3,
 *   plus any within `rttMarginMs` of the best), and among them a sample weighs 1 / (its RTT above
 *   the best + ε)², since with queueing delays its offset error is at most half of that excess;
 *   ε (their median excess) stops one lucky sample from deciding alone. (Close to the median of
 *   the best samples; better on queueing-like jitter.)
 * - Drift: a local crystal a few tens of ppm fast or slow moves the offset by milliseconds a
 *   minute. A robust slope (Theil–Sen over each burst's best sample) is fitted once the samples
 *   span `minSkewSpanMs`, shrunk toward 0 unless it stands well above its noise; older samples
 *   are carried along it, and ranked down by what an unknown drift could have added since.
 *
 * A jump (the last few samples all beyond stepThresholdMs of the estimate, past their own error
 * bounds, on one side) empties the window down to those samples.
 *
 * Slewing: the offset applied to conversions never jumps while the session plays. A new estimate
 * is approached at `maxSlewMsPerSec` (0.5 ms per second, 500 ppm: inaudible) on top of the fitted
 * drift. It steps at once when nothing is playing, until the first burst is done, or when the gap
 * exceeds `stepThresholdMs` (25 ms), where slewing would take too long.
 *
 * ## Session timeline
 * The clock listens to `metronome:start`, `metronome:stop`, `tempo:change` (linear ramps),
 * `position:seek`, `position:sync`, `session:state_sync` and `metronome:beat` on the socket and
 * keeps a copy of the server's timeline (src/core/timeline.rs: same anchors, same ramp integral,
 * same inverse), so it predicts a beat's server time exactly as the server computes it. Each
 * `position:sync` checks the model (beat count = (bar−1)·beatsPerBar + beat−1 + beatProgress at
 * serverTime) and repairs it when it disagrees: at once while the model is a guess (a late
 * joiner), after 4 disagreeing in a row otherwise (a missed event); one older than the last
 * change is stale and ignored. Beat counts are the server's: beat count 0 is the first beat of a
 * fresh start and sounds at `startTime`; beat count k is bar floor(k / beatsPerBar) + 1, beat
 * (k mod beatsPerBar) + 1.
 *
 * ## API
 * new BandSyncClock(options)
 *   socket            socket.io-client socket, or a fake with on/off/connected and
 *                     timeout(ms).emitWithAck(event, payload). Optional: without one, feed
 *                     samples with addSample() and events with handleEvent().
 *   now()             local clock, ms (default performance.timeOrigin + performance.now(),
 *                     else Date.now()). Inject one to test or simulate.
 *   setTimeout, clearTimeout   timers (default the global ones).
 *   burstSize=32, burstGapMs=10, intervalMs=2000, periodicSamples=3, windowSize=64,
 *   requestTimeoutMs=2000, rttMarginMs=0.25, maxSlewMsPerSec=0.5, stepThresholdMs=25,
 *   minSkewSpanMs=4000, maxSkewPpm=200, assumedSkewPpm=50, clusterGapMs=500, keepFraction=0.25,
 *   minKeep=3, shrink=16, autoStart=true (start syncing on connect).
 * Properties / getters
 *   offset            applied offset now (server − local, ms); NaN before the first sample.
 *   targetOffset      the current estimate now (what `offset` slews toward).
 *   rtt               the lowest RTT in the window (ms).
 *   skewPpm           the fitted drift: how fast the local clock runs against the server's, ppm
 *                     (positive: local runs fast).
 *   synced            true once a burst (burstSize samples, or the end of a burst) has given an
 *                     estimate; until then every estimate is applied at once.
 *   samples           the window: [{t0, t1, t2, t3, rtt, offset, at}].
 *   timeline          {isPlaying, tempo, timeSignature, beatsPerBar, anchorTime, anchorPosition,
 *                     anchorBeat, ramp, beatKnown} (server times).
 *   isPlaying, tempo, beatsPerBar
 *   lastBeatCheck     {beat, serverTime, predicted, error} from the last metronome:beat.
 *   repairs           the last few position:sync that repaired the model (diagnostics).
 *   stats             {sent, failed, rejected}: clock:sync requests.
 * Methods
 *   now()                         local clock.
 *   serverNow()                   the server's clock, estimated.
 *   offsetAt(local)               the applied offset at local time `local`.
 *   toServer(local), toLocal(server)   time conversion with the applied offset.
 *   start(), stop()               start / stop syncing (start is automatic on connect).
 *   sync()                        send one clock:sync now; resolves with the sample or null.
 *   burst(n)                      n samples one after the other; resolves when done.
 *   addSample({t0, t1, t2, t3})   feed a sample by hand (tests, custom transports).
 *   estimate()                    {offset, rtt, skewPpm, used, total}: the estimate from the window
 *                                 now (before slewing).
 *   handleEvent(name, payload)    feed a server event by hand.
 *   applySessionState(session)    a session from a join ack or session:state_sync.
 *   tempoAt(server)               tempo sounding at a server time.
 *   beatAt(server)                fractional beat count at a server time.
 *   serverTimeOfBeat(k)           server time (fractional ms) of beat count k; null when stopped.
 *   localTimeOfBeat(k)            local time at which beat count k sounds; null when stopped.
 *   nextBeats(afterLocal, n)      the next n beats at or after local time `afterLocal`:
 *                                 [{index, bar, beat, downbeat, serverTime, localTime, tempo}].
 *   positionAt(local)             song position (ms) at a local time.
 *   on(event, fn) / off(event, fn)   "sync" (after each estimate), "timeline" (model changed),
 *                                 "sample" (each sample).
 *   close()                       stop syncing and detach from the socket.
 * Also exported: Timeline (the timeline model alone), estimateOffset(samples, options) (the
 * estimator alone), median(values), beatsPerBar(signature), defaultNow().
 */

const DEFAULTS = {
  burstSize: 32,
  burstGapMs: 10,
  intervalMs: 2000,
  periodicSamples: 3,
  windowSize: 64,
  requestTimeoutMs: 2000,
  rttMarginMs: 0.25,
  maxSlewMsPerSec: 0.5,
  stepThresholdMs: 25,
  minSkewSpanMs: 4_000,
  maxSkewPpm: 200,
  assumedSkewPpm: 50,
  clusterGapMs: 500,
  keepFraction: 0.25,
  minKeep: 3,
  shrink: 16,
  autoStart: true,
};

const TIMELINE_EVENTS = [
  "metronome:start",
  "metronome:stop",
  "tempo:change",
  "position:seek",
  "position:sync",
  "session:state_sync",
  "metronome:beat",
];

/** The default local clock: a monotonic clock on the epoch scale where there is one. */
export function defaultNow() {
  const perf = globalThis.performance;
  if (perf && typeof perf.now === "function") {
    if (typeof perf.timeOrigin === "number" && perf.timeOrigin > 0) return () => perf.timeOrigin + perf.now();
    const base = Date.now() - perf.now();
    return () => base + perf.now();
  }
  return () => Date.now();
}

export function median(values) {
  if (values.length === 0) return NaN;
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

/** Beats per bar of a time signature such as "4/4" or "7/8". */
export function beatsPerBar(signature) {
  const n = parseInt(String(signature ?? "4/4").split("/")[0], 10);
  return Number.isFinite(n) && n > 0 ? n : 4;
}

// ---------------------------------------------------------------------------------------------
// The session timeline: a port of src/core/timeline.rs with fractional server times.

/** Tempo of a ramp at server time t (linear from `from` to `to` over `duration` from `start`). */
function rampTempoAt(ramp, t) {
  const progress = Math.min(1, Math.max(0, (t - ramp.start) / ramp.duration));
  return ramp.from + (ramp.to - ramp.from) * progress;
}

/** Beats from the ramp's start to t (clamped to the ramp): the integral of its tempo. */
function rampBeatsUntil(ramp, t) {
  const e = Math.min(ramp.duration, Math.max(0, t - ramp.start));
  return (ramp.from * e + ((ramp.to - ramp.from) * e * e) / (2 * ramp.duration)) / 60_000;
}

/** The ramp's end as the server counts it: whole milliseconds, rounded up. */
function rampEnd(ramp) {
  return ramp.start + Math.ceil(ramp.duration);
}

export class Timeline {
  constructor() {
    this.tempo = 120;
    this.ramp = null;
    this.isPlaying = false;
    this.anchorPosition = 0;
    this.anchorBeat = 0;
    this.anchorTime = 0;
    this.timeSignature = "4/4";
    /** False while the beat count at the anchor is a guess (late join), until a position:sync. */
    this.beatKnown = true;
  }

  get beatsPerBar() {
    return beatsPerBar(this.timeSignature);
  }

  positionAt(t) {
    return this.isPlaying && t > this.anchorTime ? this.anchorPosition + (t - this.anchorTime) : this.anchorPosition;
  }

  tempoAt(t) {
    if (this.ramp && this.isPlaying && t < rampEnd(this.ramp)) return rampTempoAt(this.ramp, t);
    return this.tempo;
  }

  beatAt(t) {
    if (!this.isPlaying || t <= this.anchorTime) return this.anchorBeat;
    if (this.ramp) {
      const afterRamp = Math.max(0, t - rampEnd(this.ramp));
      return this.anchorBeat + rampBeatsUntil(this.ramp, t) + (afterRamp * this.tempo) / 60_000;
    }
    return this.anchorBeat + ((t - this.anchorTime) * this.tempo) / 60_000;
  }

  /** Server time of beat count `beat`, as Timeline::time_of_beat; null when stopped. */
  timeOfBeat(beat) {
    if (!this.isPlaying) return null;
    const start = this.anchorTime;
    const wanted = Math.max(0, beat - this.anchorBeat) * 60_000;
    const ramp = this.ramp;
    if (!ramp) return start + wanted / this.tempo;
    const rampBeats = rampBeatsUntil(ramp, rampEnd(ramp)) * 60_000;
    if (wanted > rampBeats) return rampEnd(ramp) + (wanted - rampBeats) / ramp.to;
    const a = (ramp.to - ramp.from) / (2 * ramp.duration);
    const elapsed =
      Math.abs(a) < 1e-12 ? wanted / ramp.from : (-ramp.from + Math.sqrt(ramp.from * ramp.from + 4 * a * wanted)) / (2 * a);
    return ramp.start + elapsed;
  }

  reanchor(now) {
    if (this.isPlaying && now < this.anchorTime) return;
    this.anchorPosition = this.positionAt(now);
    this.anchorBeat = this.beatAt(now);
    const ramp = this.ramp;
    this.ramp =
      ramp && this.isPlaying && now < rampEnd(ramp)
        ? { from: rampTempoAt(ramp, now), to: ramp.to, start: now, duration: ramp.duration - (now - ramp.start) }
        : null;
    this.anchorTime = now;
  }

  playAt(start, now, position) {
    this.reanchor(now);
    if (typeof position === "number") this.anchorPosition = position;
    this.ramp = null;
    this.isPlaying = true;
    this.anchorTime = Math.max(start, now);
  }

  stop(now) {
    this.isPlaying = false;
    this.ramp = null;
    this.anchorPosition = 0;
    this.anchorBeat = 0;
    this.anchorTime = now;
    this.beatKnown = true;
  }

  pause(now, position) {
    this.reanchor(now);
    this.isPlaying = false;
    this.ramp = null;
    if (typeof position === "number") this.anchorPosition = position;
  }

  seek(position, now) {
    this.reanchor(now);
    this.anchorPosition = position;
    this.anchorBeat = (position * this.tempo) / 60_000;
    this.beatKnown = true;
  }

  setTempo(tempo, now) {
    this.reanchor(now);
    this.ramp = null;
    this.tempo = tempo;
  }

  /** A linear ramp from `from` (the tempo sounding at `now`) to `tempo` over `duration` ms. */
  rampTempo(tempo, duration, now, from = this.tempoAt(now)) {
    if (!(duration > 0) || !this.isPlaying) return this.setTempo(tempo, now);
    this.reanchor(now);
    this.ramp = { from, to: tempo, start: this.anchorTime, duration };
    this.tempo = tempo;
  }

  snapshot() {
    return {
      isPlaying: this.isPlaying,
      tempo: this.tempo,
      timeSignature: this.timeSignature,
      beatsPerBar: this.beatsPerBar,
      anchorTime: this.anchorTime,
      anchorPosition: this.anchorPosition,
      anchorBeat: this.anchorBeat,
      ramp: this.ramp ? { ...this.ramp } : null,
      beatKnown: this.beatKnown,
    };
  }
}

// ---------------------------------------------------------------------------------------------
// Offset estimation.

/**
 * The estimate from a window of samples {rtt, offset, at} (at = local mid-time of the exchange).
 *
 * 1. Drift. Samples closer than clusterGapMs belong to one cluster (a burst); each cluster's
 *    lowest-RTT sample represents it. With at least 5 representatives spanning minSkewSpanMs, the
 *    slope of offset against local time is the median of pairwise slopes (Theil–Sen) of pairs at
 *    least minSkewSpanMs / 2 apart. It is shrunk toward 0 by its uncertainty se
 *    (slope·s² / (s² + shrink·se²), shrink = 16: four standard errors; se from the spread about
 *    the line, or half the RTT variation if larger), so noisy paths do not invent a drift, and
 *    clamped to ±maxSkewPpm.
 * 2. Offset. Each sample's offset is carried to the newest sample's time along that slope. A sample
 *    is ranked by rtt + 2·r·age, its error bound (rtt / 2, plus what an unknown drift r adds since):
 *    r is the slope's uncertainty, or assumedSkewPpm while there is no slope. The best quarter (at
 *    least 3) and any within rttMarginMs of the best are kept; the estimate is their mean weighted
 *    by 1 / (score − best score + ε)², ε = max(0.05 ms, the kept samples' median of that excess).
 *
 * Returns {offset, slope, ref, rtt, used, total, clusters}: the offset at local time t is
 * offset + slope·(t − ref). Null without samples.
 */
export function estimateOffset(samples, options = {}) {
  const {
    rttMarginMs = DEFAULTS.rttMarginMs,
    minSkewSpanMs = DEFAULTS.minSkewSpanMs,
    maxSkewPpm = DEFAULTS.maxSkewPpm,
    assumedSkewPpm = DEFAULTS.assumedSkewPpm,
    clusterGapMs = DEFAULTS.clusterGapMs,
    keepFraction = DEFAULTS.keepFraction,
    minKeep = DEFAULTS.minKeep,
    shrink = DEFAULTS.shrink,
  } = options;
  if (samples.length === 0) return null;
  const byTime = [...samples].sort((a, b) => a.at - b.at);
  const ref = byTime[byTime.length - 1].at;
  // 1. Drift from the clusters' best samples.
  const reps = [];
  let best = null;
  for (let i = 0; i < byTime.length; i++) {
    const s = byTime[i];
    if (best && s.at - byTime[i - 1].at > clusterGapMs) {
      reps.push(best);
      best = null;
    }
    if (!best || s.rtt < best.rtt) best = s;
  }
  reps.push(best);
  let slope = 0;
  let rate = assumedSkewPpm * 1e-6;
  const span = reps.length ? reps[reps.length - 1].at - reps[0].at : 0;
  if (reps.length >= 5 && span >= minSkewSpanMs) {
    const slopes = [];
    for (let i = 0; i < reps.length; i++) {
      for (let j = i + 1; j < reps.length; j++) {
        const dt = reps[j].at - reps[i].at;
        if (dt >= minSkewSpanMs / 2) slopes.push((reps[j].offset - reps[i].offset) / dt);
      }
    }
    if (slopes.length) {
      const raw = median(slopes);
      const residuals = reps.map((r) => r.offset - raw * (r.at - ref));
      const center = median(residuals);
      // Noise: the spread about the line, and no less than the path's RTT variation suggests.
      const rtts = reps.map((r) => r.rtt);
      const sigma = Math.max(
        0.005,
        1.4826 * median(residuals.map((v) => Math.abs(v - center))),
        (median(rtts) - Math.min(...rtts)) / 2,
      );
      const meanAt = reps.reduce((a, r) => a + r.at, 0) / reps.length;
      const se = sigma / Math.sqrt(reps.reduce((a, r) => a + (r.at - meanAt) ** 2, 0));
      // Shrink unless the slope stands well above its noise (shrink = k², k standard errors), clamp.
      const limit = maxSkewPpm * 1e-6;
      const shrunk = raw * raw + shrink * se * se > 0 ? (raw * raw * raw) / (raw * raw + shrink * se * se) : 0;
      slope = Math.min(limit, Math.max(-limit, shrunk));
      rate = Math.max(1e-6, Math.min(rate, se + Math.abs(raw - slope)));
    }
  }
  // 2. Offset: from the samples with the smallest error bound.
  const ranked = samples
    .map((s) => ({ score: s.rtt + 2 * rate * (ref - s.at), offset: s.offset + slope * (ref - s.at) }))
    .sort((a, b) => a.score - b.score);
  const quota = Math.min(ranked.length, Math.max(minKeep, Math.ceil(ranked.length * keepFraction)));
  const kept = ranked.filter((s, i) => i < quota || s.score <= ranked[0].score + rttMarginMs);
  const minRtt = Math.min(...samples.map((s) => s.rtt));
  // Weighted by 1 / (excess + ε)², excess = score above the best: with queueing delays a sample's
  // error is at most half its excess. ε, the kept samples' median excess, keeps one lucky sample
  // from deciding alone where delays are symmetric noise (low RTT there says little of the error).
  const epsilon = Math.max(0.05, median(kept.map((s) => s.score - ranked[0].score)));
  let sw = 0;
  let sx = 0;
  for (const s of kept) {
    const w = 1 / (s.score - ranked[0].score + epsilon) ** 2;
    sw += w;
    sx += w * s.offset;
  }
  const offset = sx / sw;
  return {
    offset,
    slope,
    ref,
    rtt: minRtt,
    used: kept.length,
    total: samples.length,
    clusters: reps.length,
  };
}

// ---------------------------------------------------------------------------------------------

export class BandSyncClock {
  constructor(options = {}) {
    this.opts = { ...DEFAULTS, ...options };
    this.now = options.now ?? defaultNow();
    this._setTimeout = options.setTimeout ?? ((fn, ms) => globalThis.setTimeout(fn, ms));
    this._clearTimeout = options.clearTimeout ?? ((id) => globalThis.clearTimeout(id));
    this.socket = options.socket ?? null;
    this.samples = [];
    /** clock:sync requests sent, failed (timeout, disconnect) and rejected (bad answer). */
    this.stats = { sent: 0, failed: 0, rejected: 0 };
    this.synced = false;
    this.model = new Timeline();
    this.lastBeatCheck = null;
    /** The last few position:sync that disagreed with the model, and what the model was. */
    this.repairs = [];
    this._disagreements = null;
    this._estimate = null; // {offset, slope, ref, rtt, ...}
    // The applied offset: target(t) − gap(t), gap shrinking at maxSlewMsPerSec from `_gapAt`.
    this._gap = 0;
    this._gapAt = 0;
    this._listeners = new Map();
    this._timer = null;
    this._running = false;
    this._generation = 0;
    this._handlers = [];
    if (this.socket) this._attach();
  }

  // --- events --------------------------------------------------------------------------------

  on(event, fn) {
    if (!this._listeners.has(event)) this._listeners.set(event, new Set());
    this._listeners.get(event).add(fn);
    return this;
  }

  off(event, fn) {
    this._listeners.get(event)?.delete(fn);
    return this;
  }

  _emit(event, data) {
    for (const fn of this._listeners.get(event) ?? []) {
      try {
        fn(data);
      } catch (e) {
        console.error(e);
      }
    }
  }

  _attach() {
    const s = this.socket;
    const add = (event, fn) => {
      s.on(event, fn);
      this._handlers.push([event, fn]);
    };
    add("connect", () => {
      if (this.opts.autoStart) this.start();
    });
    add("disconnect", () => this._halt());
    for (const event of TIMELINE_EVENTS) add(event, (payload) => this.handleEvent(event, payload));
    if (s.connected && this.opts.autoStart) this.start();
  }

  close() {
    this._halt();
    if (this.socket) for (const [event, fn] of this._handlers) this.socket.off(event, fn);
    this._handlers = [];
  }

  // --- syncing -------------------------------------------------------------------------------

  /** Starts syncing: a burst, then one sample every intervalMs. */
  start() {
    this._halt();
    this._running = true;
    const generation = ++this._generation;
    (async () => {
      await this.burst(this.opts.burstSize, generation);
      if (generation === this._generation) this._schedule(generation);
    })();
  }

  stop() {
    this._halt();
  }

  _halt() {
    this._running = false;
    this._generation++;
    if (this._timer !== null) this._clearTimeout(this._timer);
    this._timer = null;
  }

  _schedule(generation) {
    if (!this._running || generation !== this._generation) return;
    this._timer = this._setTimeout(async () => {
      this._timer = null;
      if (generation !== this._generation) return;
      await this.burst(this.opts.periodicSamples, generation);
      this._schedule(generation);
    }, this.opts.intervalMs);
  }

  /** n samples, one after the other, burstGapMs apart. */
  async burst(n = this.opts.burstSize, generation = this._generation) {
    for (let i = 0; i < n && generation === this._generation; i++) {
      await this.sync();
      if (this.opts.burstGapMs > 0 && i < n - 1) await new Promise((r) => this._setTimeout(r, this.opts.burstGapMs));
    }
    if (this._estimate && !this.synced) this._markSynced();
  }

  _markSynced() {
    this.synced = true;
    this._emit("sync", { offset: this.offset, target: this.targetOffset, rtt: this.rtt, skewPpm: this.skewPpm, stepped: true });
  }

  /** One clock:sync round trip; resolves with the sample, or null when it failed. */
  async sync() {
    const socket = this.socket;
    if (!socket || socket.connected === false) return null;
    const t0 = this.now();
    let ack;
    this.stats.sent++;
    try {
      ack = await socket.timeout(this.opts.requestTimeoutMs).emitWithAck("clock:sync", { t0 });
    } catch {
      this.stats.failed++;
      return null;
    }
    const t3 = this.now();
    // The echo must be ours; compared loosely, since a server may re-encode t0 1 ULP off.
    if (!ack || !(Math.abs(ack.t0 - t0) < 0.001)) {
      this.stats.rejected++;
      return null;
    }
    const sample = this.addSample({ t0, t1: ack.t1, t2: ack.t2, t3 });
    if (!sample) this.stats.rejected++;
    return sample;
  }

  /** Adds a sample {t0, t1, t2, t3} (local t0/t3, server t1/t2) to the window. */
  addSample({ t0, t1, t2, t3 }) {
    if (![t0, t1, t2, t3].every(Number.isFinite)) return null;
    const rtt = t3 - t0 - (t2 - t1);
    if (rtt < 0 || t2 < t1) return null;
    const sample = { t0, t1, t2, t3, rtt, offset: (t1 - t0 + (t2 - t3)) / 2, at: (t0 + t3) / 2 };
    this.samples.push(sample);
    while (this.samples.length > this.opts.windowSize) this.samples.shift();
    this._emit("sample", sample);
    this._detectStep();
    this._update();
    // A full burst's worth of samples makes the clock synced, whoever sent them.
    if (!this.synced && this.samples.length >= this.opts.burstSize) this._markSynced();
    return sample;
  }

  /**
   * A clock that jumped (or a path that changed for good): when the last `periodicSamples` (at
   * least 3) samples all disagree with the estimate by more than stepThresholdMs beyond their
   * own error bound ((rtt − min rtt) / 2), the older samples are dropped so the estimate follows
   * at once instead of blending old and new.
   */
  _detectStep() {
    const n = Math.max(3, this.opts.periodicSamples);
    if (!this._estimate || this.samples.length <= n) return;
    const e = estimateOffset(this.samples.slice(0, -n), this.opts);
    if (!e) return;
    const minRtt = e.rtt;
    const recent = this.samples.slice(-n);
    const far = recent.every((s) => {
      const target = e.offset + e.slope * (s.at - e.ref);
      return Math.abs(s.offset - target) > this.opts.stepThresholdMs + Math.max(0, s.rtt - minRtt) / 2;
    });
    const sameSide = new Set(recent.map((s) => Math.sign(s.offset - (e.offset + e.slope * (s.at - e.ref))))).size === 1;
    if (far && sameSide) this.samples = recent;
  }

  /** The estimate from the current window (see estimateOffset). */
  estimate() {
    const e = estimateOffset(this.samples, this.opts);
    if (!e) return null;
    return { offset: e.offset + e.slope * (this.now() - e.ref), rtt: e.rtt, skewPpm: -e.slope * 1e6, used: e.used, total: e.total };
  }

  _targetAt(t) {
    const e = this._estimate;
    return e ? e.offset + e.slope * (t - e.ref) : NaN;
  }

  _gapAt_(t) {
    const g = this._gap;
    if (g === 0 || t <= this._gapAt) return g;
    const shrink = (this.opts.maxSlewMsPerSec * (t - this._gapAt)) / 1000;
    return Math.abs(g) <= shrink ? 0 : g - Math.sign(g) * shrink;
  }

  /**
   * Re-estimates. The applied offset stays continuous (the gap to the new target shrinks at
   * maxSlewMsPerSec) unless a step is allowed: before the first burst is done, while not playing,
   * or when the gap exceeds stepThresholdMs.
   */
  _update() {
    const t = this.now();
    const previous = this._estimate ? this.offsetAt(t) : NaN;
    const e = estimateOffset(this.samples, this.opts);
    if (!e) return;
    this._estimate = e;
    const target = this._targetAt(t);
    const gap = Number.isFinite(previous) ? target - previous : 0;
    const step = !this.synced || !this.isPlaying || Math.abs(gap) > this.opts.stepThresholdMs;
    this._gap = step ? 0 : gap;
    this._gapAt = t;
    if (this.synced) this._emit("sync", { offset: this.offsetAt(t), target, rtt: e.rtt, skewPpm: -e.slope * 1e6, stepped: step });
  }

  offsetAt(local) {
    return this._targetAt(local) - this._gapAt_(local);
  }

  get offset() {
    return this.offsetAt(this.now());
  }

  get targetOffset() {
    return this._targetAt(this.now());
  }

  get rtt() {
    return this._estimate ? this._estimate.rtt : NaN;
  }

  get skewPpm() {
    return this._estimate ? -this._estimate.slope * 1e6 : 0;
  }

  serverNow() {
    return this.toServer(this.now());
  }

  toServer(local) {
    return local + this.offsetAt(local);
  }

  /** The local time whose server time is `server` (fixed point: the offset moves slowly). */
  toLocal(server) {
    let local = server - this.offsetAt(this.now());
    for (let i = 0; i < 3; i++) local = server - this.offsetAt(local);
    return local;
  }

  // --- the session timeline -------------------------------------------------------------------

  get timeline() {
    return this.model.snapshot();
  }

  get isPlaying() {
    return this.model.isPlaying;
  }

  get tempo() {
    return this.model.tempo;
  }

  get beatsPerBar() {
    return this.model.beatsPerBar;
  }

  tempoAt(server) {
    return this.model.tempoAt(server);
  }

  beatAt(server) {
    return this.model.beatAt(server);
  }

  serverTimeOfBeat(k) {
    return this.model.timeOfBeat(k);
  }

  localTimeOfBeat(k) {
    const s = this.model.timeOfBeat(k);
    return s === null ? null : this.toLocal(s);
  }

  positionAt(local) {
    return this.model.positionAt(this.toServer(local));
  }

  /** The next n beats sounding at or after local time `afterLocal` (default now). */
  nextBeats(afterLocal = this.now(), n = 4) {
    if (!this.model.isPlaying) return [];
    const after = this.toServer(afterLocal);
    let k = Math.ceil(this.model.beatAt(after) - 1e-9) + 0; // + 0: no -0
    let t = this.model.timeOfBeat(k);
    if (t < after - 1e-6) t = this.model.timeOfBeat(++k);
    const perBar = this.model.beatsPerBar;
    const out = [];
    for (let i = 0; i < n; i++, k++) {
      const serverTime = i === 0 ? t : this.model.timeOfBeat(k);
      const inBar = ((k % perBar) + perBar) % perBar;
      out.push({
        index: k,
        bar: Math.floor(k / perBar) + 1,
        beat: inBar + 1,
        downbeat: inBar === 0,
        serverTime,
        localTime: this.toLocal(serverTime),
        tempo: this.model.tempoAt(serverTime),
      });
    }
    return out;
  }

  /** A session from a join ack or session:state_sync (`timeline` fields are not sent). */
  applySessionState(session) {
    if (!session || typeof session !== "object") return;
    const m = this.model;
    if (session.timeSignature) m.timeSignature = session.timeSignature;
    const at = Number(session.serverTimestamp);
    if (!session.isPlaying) {
      if (m.isPlaying) m.pause(Number.isFinite(at) ? at : m.anchorTime); // a stop we did not see
      if (Number.isFinite(session.tempo)) m.tempo = session.tempo;
      // The state carries whole milliseconds: only a real difference (a seek we missed) counts.
      if (Number.isFinite(session.position) && Math.abs(session.position - m.anchorPosition) >= 1) {
        m.anchorPosition = session.position;
        m.anchorBeat = (session.position * m.tempo) / 60_000;
      }
    } else if (!m.isPlaying && Number.isFinite(at)) {
      // Playing, and no start seen: a coarse model until the next position:sync repairs it.
      m.isPlaying = true;
      m.ramp = null;
      m.tempo = Number.isFinite(session.tempoNow) ? session.tempoNow : session.tempo;
      m.anchorTime = at;
      m.anchorPosition = Number(session.position) || 0;
      m.anchorBeat = (m.anchorPosition * m.tempo) / 60_000;
      m.beatKnown = false;
    }
    this._emit("timeline", this.timeline);
  }

  /** Feeds a server event to the timeline model. */
  handleEvent(name, p) {
    if (!p || typeof p !== "object") return;
    const m = this.model;
    switch (name) {
      case "metronome:start": {
        if (p.timeSignature) m.timeSignature = p.timeSignature;
        const start = Number(p.startTime);
        if (!Number.isFinite(start)) return;
        // The server re-anchors (a paused timeline keeps its position and beat), sets the tempo,
        // and plays from the anchors at startTime.
        if (m.isPlaying) m.reanchor(start); // a start while playing: carry on from there
        if (Number.isFinite(p.tempo)) m.tempo = p.tempo;
        m.ramp = null;
        m.isPlaying = true;
        m.anchorTime = start;
        if (Number.isFinite(p.positionMs) && Math.abs(p.positionMs - m.anchorPosition) > 1e-6) {
          // The model had another position (joined late, missed a seek): the beat is a guess
          // until the next position:sync.
          m.anchorPosition = p.positionMs;
          m.anchorBeat = (p.positionMs * m.tempo) / 60_000;
          m.beatKnown = false;
        }
        break;
      }
      case "metronome:stop": {
        const at = Number(p.stopTime);
        if (p.positionMs === 0) m.stop(at);
        else m.pause(at, p.positionMs);
        break;
      }
      case "tempo:change": {
        const at = Number(p.effectiveTimestamp);
        if (!Number.isFinite(p.newTempo)) return;
        if (m.isPlaying && Number.isFinite(p.rampDurationMs) && p.rampDurationMs > 0) {
          m.rampTempo(p.newTempo, p.rampDurationMs, at, Number.isFinite(p.oldTempo) ? p.oldTempo : undefined);
        } else {
          m.setTempo(p.newTempo, at);
        }
        break;
      }
      case "position:seek":
        m.seek(Number(p.positionMs), Number(p.serverTime));
        break;
      case "position:sync":
        this._checkSync(p);
        return; // 80 Hz: no "timeline" event unless repaired (see _checkSync)
      case "metronome:beat": {
        if (!Number.isFinite(p.beatTime)) return;
        const k = (p.bar - 1) * m.beatsPerBar + (p.beat - 1);
        const predicted = m.timeOfBeat(k);
        this.lastBeatCheck = {
          beat: k,
          serverTime: p.beatTime,
          predicted,
          error: predicted === null ? null : predicted - p.beatTime,
        };
        return;
      }
      case "session:state_sync":
        this.applySessionState(p);
        return;
      default:
        return;
    }
    this._emit("timeline", this.timeline);
  }

  /**
   * Checks the model against a position:sync and repairs it when they disagree. The explicit
   * events are exact; a position:sync is trusted over them only when the model is a guess (a late
   * joiner's beat count, a missed start) or when it keeps disagreeing (4 in a row, 30 ms apart or
   * more): a missed tempo change. One older than the model's last change is stale and ignored.
   */
  _checkSync(p) {
    const m = this.model;
    const t = Number(p.serverTime);
    if (!Number.isFinite(t) || !Number.isFinite(p.bar) || !Number.isFinite(p.beat)) return;
    if (m.isPlaying && t < m.anchorTime) return;
    const perBar = m.beatsPerBar;
    const beat = (p.bar - 1) * perBar + (p.beat - 1) + (Number(p.beatProgress) || 0);
    const tempoOk = !Number.isFinite(p.tempo) || Math.abs(m.tempoAt(t) - p.tempo) < 1e-6;
    if (m.isPlaying && tempoOk && Math.abs(m.beatAt(t) - beat) < 1e-6) {
      m.beatKnown = true;
      this._disagreements = null;
      return;
    }
    const guess = !m.isPlaying || !m.beatKnown;
    if (!guess) {
      const d = this._disagreements;
      this._disagreements = d && d.count ? { first: d.first, count: d.count + 1 } : { first: t, count: 1 };
      if (this._disagreements.count < 4 || t - this._disagreements.first < 30) return;
    }
    this._disagreements = null;
    this.repairs.push({ at: t, sync: { ...p }, model: this.timeline, modelBeat: m.beatAt(t), modelTempo: m.tempoAt(t) });
    if (this.repairs.length > 8) this.repairs.shift();
    if (m.isPlaying && tempoOk) {
      // Right tempo, wrong count: the anchor's beat was a guess. Shift it.
      m.anchorBeat += beat - m.beatAt(t);
      if (Number.isFinite(p.positionMs)) m.anchorPosition += p.positionMs - m.positionAt(t);
      m.beatKnown = true;
    } else {
      // Missed something: re-anchor here at the tempo sounding now (a ramp's shape is not sent).
      m.isPlaying = true;
      m.ramp = null;
      if (Number.isFinite(p.tempo)) m.tempo = p.tempo;
      m.anchorTime = t;
      m.anchorBeat = beat;
      m.anchorPosition = Number(p.positionMs) || 0;
      m.beatKnown = true;
    }
    this._emit("timeline", this.timeline);
  }
}

export default BandSyncClock;
