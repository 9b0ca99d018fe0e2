//! Dedup and resolution of one alert key (org + machine + component + type), in
//! event time (ARCHITECTURE.md, "Alerts").
//!
//! Detections arrive in `(ts, partition, offset)` order. Windows are epoch-aligned
//! tumbling windows of `window_ms`: the first `max_per_window` detections of a
//! window become notifications (ids: stable hash of key, window start and sequence
//! 1..=max); the rest are counted, and when the window closes the last passing
//! notification is re-emitted, same id, with `suppressedCount` = the count. A key
//! with no detection in `(last, last + resolve_ms]` is resolved at
//! `last + resolve_ms`: a RESOLVED record (id: hash of key, `resolved` and that ts).
//!
//! A window closes, and a key resolves, either when a later detection of the key
//! shows it (inline, before that detection is handled) or when the event-time
//! frontier passes it ([`KeyDedup::advance`]), so the records of a key come out in
//! the same order whatever the batching — the order the naive reference in the
//! tests computes.

use crate::records::{Alert, AlertStatus};

/// Dedup settings in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DedupSettings {
    /// Tumbling window length (> 0).
    pub window_ms: i64,
    /// Notifications per key and window.
    pub max_per_window: u32,
    /// Quiet time after which a key resolves.
    pub resolve_ms: i64,
}

impl DedupSettings {
    /// From the `[alerts]` config section.
    pub fn from_config(c: &crate::config::AlertsConfig) -> DedupSettings {
        let ms = |s: u64| i64::try_from(s.saturating_mul(1000)).unwrap_or(i64::MAX);
        DedupSettings {
            window_ms: ms(c.dedup_window_s).max(1),
            max_per_window: c.max_per_window,
            resolve_ms: ms(c.resolve_after_s),
        }
    }

    /// The event time at which a record of this key is due, the same in every
    /// run: a notification at its detection's ts, a closing re-emission at the end
    /// of its window, a resolution at its own ts. The alerts operator emits each
    /// record at this timely time, so a sink's frontier says which records exist.
    pub fn due(&self, a: &Alert) -> i64 {
        if a.status == AlertStatus::Resolved || a.suppressed_count == 0 {
            a.ts
        } else {
            self.window_start(a.ts).saturating_add(self.window_ms)
        }
    }

    /// Start of the epoch-aligned window holding `ts`.
    pub fn window_start(&self, ts: i64) -> i64 {
        ts - ts.rem_euclid(self.window_ms)
    }
}

/// Stable 128-bit id (xxh3) of the parts, as 32 hex digits. Parts are joined
/// with NUL, which no org, machine or component name may contain on the wire.
pub fn stable_id(parts: &[&str]) -> String {
    let mut buf = Vec::with_capacity(parts.iter().map(|p| p.len() + 1).sum());
    for p in parts {
        buf.extend_from_slice(p.as_bytes());
        buf.push(0);
    }
    format!("{:032x}", xxhash_rust::xxh3::xxh3_128(&buf))
}

/// State of one key.
#[derive(Debug, Clone, Default)]
pub struct KeyDedup {
    /// Start of the current window (None before the first detection).
    window: Option<i64>,
    /// Detections in the current window.
    count: u32,
    /// The last notification passed in the current window.
    passed: Option<Alert>,
    /// Ts of the last detection; the key is open (unresolved) when `open`.
    last: i64,
    open: bool,
}

impl KeyDedup {
    /// Handle a detection; `build(id)` makes its notification. Records to emit
    /// (closing re-emission, resolution, then the notification) go to `out`.
    pub fn detect(
        &mut self,
        s: &DedupSettings,
        ts: i64,
        key_id: &str,
        build: impl FnOnce(String) -> Alert,
        out: &mut Vec<Alert>,
    ) {
        // Everything up to (not including) ts is known: close what ended before it.
        self.advance(s, ts, out);
        let w = s.window_start(ts);
        if self.window != Some(w) {
            self.window = Some(w);
            self.count = 0;
            self.passed = None;
        }
        self.count = self.count.saturating_add(1);
        self.last = ts;
        self.open = true;
        if self.count <= s.max_per_window {
            let id = stable_id(&[key_id, &w.to_string(), &self.count.to_string()]);
            let alert = build(id);
            self.passed = Some(alert.clone());
            out.push(alert);
        }
    }

    /// Every detection with ts < `frontier` has been handled: emit the closing
    /// re-emission of a window that ended at or before it, and the resolution if
    /// `last + resolve_ms < frontier`.
    pub fn advance(&mut self, s: &DedupSettings, frontier: i64, out: &mut Vec<Alert>) {
        let window_end = self.window.map(|w| w.saturating_add(s.window_ms));
        let resolve_at = self.last.saturating_add(s.resolve_ms);
        let close = window_end.filter(|&e| e <= frontier);
        let resolve = (self.open && resolve_at < frontier).then_some(resolve_at);
        // Emit in event-time order of the two (window end vs resolution).
        let mut events: Vec<(i64, bool)> = Vec::with_capacity(2);
        if let Some(e) = close {
            events.push((e, false));
        }
        if let Some(r) = resolve {
            events.push((r, true));
        }
        events.sort();
        for (_, is_resolution) in events {
            if is_resolution {
                self.open = false;
                if let Some(a) = self.resolution(resolve_at) {
                    out.push(a);
                }
            } else {
                self.close_window(s, out);
            }
        }
    }

    /// End of input: close the current window (nothing resolves without event time).
    pub fn finish(&mut self, s: &DedupSettings, out: &mut Vec<Alert>) {
        self.close_window(s, out);
    }

    fn close_window(&mut self, s: &DedupSettings, out: &mut Vec<Alert>) {
        if self.window.is_none() {
            return;
        }
        let suppressed = self.count.saturating_sub(s.max_per_window);
        if suppressed > 0
            && let Some(mut a) = self.passed.clone()
        {
            a.suppressed_count = suppressed;
            out.push(a);
        }
        // Keep `passed` for the resolution's fields; reset the window.
        self.window = None;
        self.count = 0;
    }

    fn resolution(&self, at: i64) -> Option<Alert> {
        let mut a = self.passed.clone()?;
        a.id = stable_id(&[
            &a.organization_id,
            &a.machine_id,
            &a.component,
            a.alert_type.as_str(),
            "resolved",
            &at.to_string(),
        ]);
        a.status = AlertStatus::Resolved;
        a.resolved_at = Some(at);
        a.ts = at;
        a.suppressed_count = 0;
        a.message = format!(
            "{} on {}: no detection since {}",
            a.component,
            a.machine_id,
            crate::time::format_rfc3339_ms(self.last)
        );
        Some(a)
    }

    /// The earliest event time at which [`advance`](Self::advance) would emit
    /// something (a window with suppressed detections ending, or the resolution
    /// becoming due), or None.
    pub fn deadline(&self, s: &DedupSettings) -> Option<i64> {
        let close = self
            .window
            .filter(|_| self.count > s.max_per_window)
            .map(|w| w.saturating_add(s.window_ms));
        let resolve = self
            .open
            .then(|| self.last.saturating_add(s.resolve_ms).saturating_add(1));
        match (close, resolve) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}
