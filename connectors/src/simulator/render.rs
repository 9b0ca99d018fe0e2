//! Allocation-free text rendering for the hot path: fixed-decimal numbers and
//! RFC 3339 timestamps with milliseconds.
//!
//! `format!` and chrono's formatter cost several hundred nanoseconds per call;
//! a row has ~16 numbers and one timestamp, and the simulator targets ≥ 1M rows/s,
//! so numbers go through `itoa` on a scaled integer and dates through Howard
//! Hinnant's civil-from-days algorithm (tested against chrono).

pub use prognos_dataflows::time::{MAX_RFC3339_MS, MIN_RFC3339_MS, rfc3339_ms_bytes as rfc3339_ms};

/// Appends `v` with exactly `decimals` (0..=3) digits after the point, rounded
/// half away from zero. Non-finite input is written as `0` so a row is always
/// valid JSON/CSV; the physics never produces it (tests check).
#[inline]
pub fn push_fixed(out: &mut Vec<u8>, v: f64, decimals: u32) {
    const SCALE: [f64; 4] = [1.0, 10.0, 100.0, 1000.0];
    const ISCALE: [u64; 4] = [1, 10, 100, 1000];
    let decimals = decimals.min(3) as usize;
    if !v.is_finite() {
        out.push(b'0');
        return;
    }
    let scaled = (v * SCALE[decimals]).round();
    // Saturating cast keeps absurd magnitudes finite text instead of UB-free garbage.
    let scaled = scaled as i64;
    if scaled < 0 {
        out.push(b'-');
    }
    let mag = scaled.unsigned_abs();
    let mut ibuf = itoa::Buffer::new();
    out.extend_from_slice(ibuf.format(mag / ISCALE[decimals]).as_bytes());
    if decimals > 0 {
        out.push(b'.');
        let mut frac = mag % ISCALE[decimals];
        let mut digits = [b'0'; 3];
        for i in (0..decimals).rev() {
            digits[i] = b'0' + (frac % 10) as u8;
            frac /= 10;
        }
        out.extend_from_slice(&digits[..decimals]);
    }
}

/// Appends `s` as the inside of a JSON string (without the quotes).
pub fn push_json_str(out: &mut Vec<u8>, s: &str) {
    for c in s.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            c if (c as u32) < 0x20 => {
                out.extend_from_slice(format!("\\u{:04x}", c as u32).as_bytes());
            }
            c => {
                let mut b = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
            }
        }
    }
}

/// Appends `s` as one CSV field, quoted only when it needs to be (RFC 4180).
pub fn push_csv_field(out: &mut Vec<u8>, s: &str) {
    if s.contains([',', '"', '\n', '\r']) {
        out.push(b'"');
        for c in s.chars() {
            if c == '"' {
                out.push(b'"');
            }
            let mut b = [0u8; 4];
            out.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
        }
        out.push(b'"');
    } else {
        out.extend_from_slice(s.as_bytes());
    }
}

/// Rounds to a historian's resolution (`decimals` digits), as rendered.
#[inline]
pub fn round_to(v: f64, decimals: u32) -> f64 {
    let s = 10f64.powi(decimals as i32);
    (v * s).round() / s
}
