//! Key layouts of the alert trees.
//!
//! Every time-ordered key ends in the same *time suffix* `ts_be(8) \0 id`, so a key
//! of the primary tree or of an index turns into the primary key by swapping its
//! prefix for `org \0`, and a page cursor compares the same way in every tree.

use prognos_dataflows::records::AlertType;

/// Order-preserving bytes of an i64 (sign bit flipped, big-endian).
pub(super) fn ts_be(ts: i64) -> [u8; 8] {
    ((ts as u64) ^ (1 << 63)).to_be_bytes()
}

/// `org \0`.
pub(super) fn org_prefix(org: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(org.len() + 1);
    k.extend_from_slice(org.as_bytes());
    k.push(0);
    k
}

/// `ts_be \0 id`.
pub(super) fn time_suffix(ts: i64, id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(9 + id.len());
    k.extend_from_slice(&ts_be(ts));
    k.push(0);
    k.extend_from_slice(id.as_bytes());
    k
}

/// Primary key: `org \0 ts_be \0 id`.
pub(super) fn primary(org: &str, ts: i64, id: &str) -> Vec<u8> {
    let mut k = org_prefix(org);
    k.extend_from_slice(&time_suffix(ts, id));
    k
}

/// `org \0 id` (the id index and the seen-record index).
pub(super) fn org_id(org: &str, id: &str) -> Vec<u8> {
    let mut k = org_prefix(org);
    k.extend_from_slice(id.as_bytes());
    k
}

/// Dedup key: `org \0 machine \0 component \0 type`.
pub(super) fn dedup(org: &str, machine: &str, component: &str, t: AlertType) -> Vec<u8> {
    let mut k = org_prefix(org);
    for part in [machine, component, t.as_str()] {
        k.extend_from_slice(part.as_bytes());
        k.push(0);
    }
    k
}

/// Component index prefix: `org \0 component \0`.
pub(super) fn component_prefix(org: &str, component: &str) -> Vec<u8> {
    let mut k = org_prefix(org);
    k.extend_from_slice(component.as_bytes());
    k.push(0);
    k
}

/// Type index prefix: `org \0 type_byte \0`.
pub(super) fn type_prefix(org: &str, t: AlertType) -> Vec<u8> {
    let mut k = org_prefix(org);
    k.push(match t {
        AlertType::Critical => b'C',
        AlertType::Warning => b'W',
        AlertType::Predictive => b'P',
    });
    k.push(0);
    k
}

/// Global change-log key: `seq_be`.
pub(super) fn seq(seq: u64) -> [u8; 8] {
    seq.to_be_bytes()
}

/// Per-org change-log key: `org \0 seq_be`.
pub(super) fn org_seq(org: &str, s: u64) -> Vec<u8> {
    let mut k = org_prefix(org);
    k.extend_from_slice(&seq(s));
    k
}

/// The sequence number at the end of a change-log key.
pub(super) fn seq_of(key: &[u8]) -> Option<u64> {
    let b: [u8; 8] = key.get(key.len().checked_sub(8)?..)?.try_into().ok()?;
    Some(u64::from_be_bytes(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ts_bytes_order_like_the_numbers() {
        let v = [i64::MIN, -86_400_000, -1, 0, 1, 1_700_000_000_000, i64::MAX];
        for w in v.windows(2) {
            assert!(ts_be(w[0]) < ts_be(w[1]), "{} vs {}", w[0], w[1]);
        }
        // Same ts: the id orders; the time suffix sorts like (ts, id).
        assert!(time_suffix(5, "a") < time_suffix(5, "b"));
        assert!(time_suffix(5, "zz") < time_suffix(6, "a"));
        assert_eq!(seq_of(&org_seq("acme", 42)), Some(42));
    }
}
