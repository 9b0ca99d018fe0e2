//! Schema mapping: a raw row in its org's own layout becomes a [`CanonicalRow`]
//! (canonical signals in config order) or a [`DeadLetter`] with a reason.
//!
//! - The org comes from the row's source (Kafka key, file); an unknown or disabled
//!   org is `unknown_org`.
//! - The machine column must hold a non-empty string or an integer (`missing_machine`).
//! - The time column holds RFC 3339 (any offset) or epoch milliseconds, as a number
//!   or a string of digits (`missing_time`, `bad_time`); times before 2000 or from
//!   2100 on are `absurd_time`. The range is fixed rather than relative to the wall
//!   clock so that replays judge rows exactly as the first run did.
//! - Continuous signals: numbers, or strings holding numbers; `null`, an absent
//!   column, `""` and `"NaN"` mean missing (NaN); `"inf"` is `non_finite`; anything
//!   else `wrong_type`.
//! - Boolean signals: `true`/`false`, `0`/`1`, and the strings `true`, `false`, `0`,
//!   `1`, `on`, `off`, `yes`, `no` (any case); `null`/absent is missing; anything
//!   else `wrong_type`.
//! - Columns that are not mapped are ignored: historians add their own.

use crate::config::{Config, SignalKind};
use crate::records::{CanonicalRow, DeadLetter, DeadLetterReason, RawPayload, RawRow};
use crate::util::ShortKey;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

/// 2000-01-01T00:00:00Z.
pub const MIN_TS_MS: i64 = 946_684_800_000;
/// 2100-01-01T00:00:00Z.
pub const MAX_TS_MS: i64 = 4_102_444_800_000;

/// What a raw column feeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Machine,
    Time,
    Signal(usize, SignalKind),
}

/// One org's compiled mapping.
#[derive(Debug)]
pub struct OrgMapping {
    machine_column: String,
    time_column: String,
    columns: HashMap<String, Target, ShortKey>,
    kinds: Vec<SignalKind>,
    /// Declared plus derived signals: the capacity a row's values get, so the
    /// features operator appends the derived values without reallocating.
    n_values: usize,
}

impl OrgMapping {
    /// Number of canonical signals.
    pub fn signal_count(&self) -> usize {
        self.kinds.len()
    }
}

/// The mappings of every enabled org.
#[derive(Debug, Clone)]
pub struct SchemaMapper {
    orgs: Arc<HashMap<String, OrgMapping, ShortKey>>,
}

impl SchemaMapper {
    /// Compile the mappings of `config`'s enabled orgs.
    pub fn new(config: &Config) -> SchemaMapper {
        let mut orgs = HashMap::with_hasher(ShortKey::default());
        for (id, org) in config.orgs.iter().filter(|(_, o)| o.enabled) {
            let mut columns = HashMap::with_hasher(ShortKey::default());
            columns.insert(org.machine_column.clone(), Target::Machine);
            columns.insert(org.time_column.clone(), Target::Time);
            for (i, s) in org.signals.iter().enumerate() {
                columns.insert(s.column.clone(), Target::Signal(i, s.kind));
            }
            orgs.insert(
                id.clone(),
                OrgMapping {
                    machine_column: org.machine_column.clone(),
                    time_column: org.time_column.clone(),
                    columns,
                    kinds: org.signals.iter().map(|s| s.kind).collect(),
                    n_values: org.value_signals().len().max(org.signals.len()),
                },
            );
        }
        SchemaMapper {
            orgs: Arc::new(orgs),
        }
    }

    /// Map one raw row.
    pub fn map(&self, row: &RawRow) -> Result<CanonicalRow, Box<DeadLetter>> {
        let mut r = self.map_unowned(row)?;
        // Mapped: the row's org is the configured one it was looked up by.
        r.organization_id = row.organization_id.clone().unwrap_or_default();
        Ok(r)
    }

    /// Map one raw row as [`map`](Self::map) does, moving the row's organization
    /// string into the mapped row (no copy) when it maps; the raw row keeps it
    /// when it does not, for the dead letter.
    pub fn map_mut(&self, row: &mut RawRow) -> Result<CanonicalRow, Box<DeadLetter>> {
        let mut r = self.map_unowned(row)?;
        r.organization_id = row.organization_id.take().unwrap_or_default();
        Ok(r)
    }

    /// The mapping with an empty `organization_id` (no allocation): the callers
    /// fill in the row's own, which is the configured org it was looked up by.
    fn map_unowned(&self, row: &RawRow) -> Result<CanonicalRow, Box<DeadLetter>> {
        let dead = |reason, org: Option<&str>, detail: String| {
            Box::new(DeadLetter {
                reason,
                partition: row.pos.partition,
                offset: row.pos.offset,
                organization_id: org.map(str::to_string),
                payload: row.payload.text().to_string(),
                detail,
            })
        };
        let Some(org_id) = row.organization_id.as_deref() else {
            return Err(dead(
                DeadLetterReason::UnknownOrg,
                None,
                "the row carries no organization (Kafka key or file)".into(),
            ));
        };
        let Some(m) = self.orgs.get(org_id) else {
            return Err(dead(
                DeadLetterReason::UnknownOrg,
                Some(org_id),
                format!("organization `{org_id}` is not configured (or disabled)"),
            ));
        };
        let mut parsed = Parsed::new(m.kinds.len(), m.n_values);
        let result = match &row.payload {
            RawPayload::Json { text } => parse_json(m, text, &mut parsed),
            RawPayload::Csv { header, text } => parse_csv(m, header, text, &mut parsed),
            RawPayload::InvalidUtf8 { valid_up_to, .. } => Err((
                DeadLetterReason::InvalidUtf8,
                format!("invalid UTF-8 at byte {valid_up_to}"),
            )),
        };
        if let Err((reason, detail)) = result {
            return Err(dead(reason, Some(org_id), detail));
        }
        let Some(machine) = parsed.machine.filter(|s| !s.is_empty()) else {
            return Err(dead(
                DeadLetterReason::MissingMachine,
                Some(org_id),
                format!("column `{}` is missing or empty", m.machine_column),
            ));
        };
        let Some(ts) = parsed.ts else {
            return Err(dead(
                DeadLetterReason::MissingTime,
                Some(org_id),
                format!("column `{}` is missing", m.time_column),
            ));
        };
        if !(MIN_TS_MS..MAX_TS_MS).contains(&ts) {
            return Err(dead(
                DeadLetterReason::AbsurdTime,
                Some(org_id),
                format!(
                    "`{}` = {ts} ms is outside 2000-01-01..2100-01-01",
                    m.time_column
                ),
            ));
        }
        Ok(CanonicalRow {
            organization_id: String::new(),
            machine_id: machine,
            ts,
            pos: row.pos,
            values: parsed.values,
        })
    }
}

type Failure = (DeadLetterReason, String);

struct Parsed {
    machine: Option<String>,
    ts: Option<i64>,
    values: Vec<f64>,
}

impl Parsed {
    fn new(n: usize, capacity: usize) -> Parsed {
        let mut values = Vec::with_capacity(capacity.max(n));
        values.resize(n, f64::NAN);
        Parsed {
            machine: None,
            ts: None,
            values,
        }
    }
}

/// A JSON scalar, borrowed when the text allows.
enum Scalar<'a> {
    Num(f64),
    Int(i64),
    Bool(bool),
    Str(std::borrow::Cow<'a, str>),
    Null,
    Nested,
}

impl<'de> serde::Deserialize<'de> for Scalar<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Scalar<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_bool<E>(self, v: bool) -> Result<Scalar<'de>, E> {
                Ok(Scalar::Bool(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Scalar<'de>, E> {
                Ok(Scalar::Int(v))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Scalar<'de>, E> {
                Ok(i64::try_from(v).map_or(Scalar::Num(v as f64), Scalar::Int))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Scalar<'de>, E> {
                Ok(Scalar::Num(v))
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Scalar<'de>, E> {
                Ok(Scalar::Str(std::borrow::Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Scalar<'de>, E> {
                Ok(Scalar::Str(std::borrow::Cow::Owned(v.to_string())))
            }
            fn visit_unit<E>(self) -> Result<Scalar<'de>, E> {
                Ok(Scalar::Null)
            }
            fn visit_none<E>(self) -> Result<Scalar<'de>, E> {
                Ok(Scalar::Null)
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut a: A) -> Result<Scalar<'de>, A::Error> {
                while a.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Scalar::Nested)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Scalar<'de>, A::Error> {
                while a.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Scalar::Nested)
            }
        }
        d.deserialize_any(V)
    }
}

/// A map key, borrowed when the text allows.
struct Key<'a>(std::borrow::Cow<'a, str>);

impl<'de> serde::Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a column name")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(std::borrow::Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(std::borrow::Cow::Owned(v.to_string())))
            }
        }
        d.deserialize_str(V)
    }
}

struct RowSeed<'m, 'p> {
    m: &'m OrgMapping,
    out: &'p mut Parsed,
}

impl<'de> DeserializeSeed<'de> for RowSeed<'_, '_> {
    type Value = Result<(), Failure>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for RowSeed<'_, '_> {
    type Value = Result<(), Failure>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Self::Value, A::Error> {
        let mut first_err: Option<Failure> = None;
        while let Some(Key(k)) = a.next_key::<Key>()? {
            match self.m.columns.get(k.as_ref()) {
                None => {
                    a.next_value::<IgnoredAny>()?;
                }
                Some(t) => {
                    let v = a.next_value::<Scalar>()?;
                    if first_err.is_none()
                        && let Err(e) = assign(self.m, *t, &k, v, self.out)
                    {
                        first_err = Some(e);
                    }
                }
            }
        }
        Ok(first_err.map_or(Ok(()), Err))
    }
}

fn parse_json(m: &OrgMapping, text: &str, out: &mut Parsed) -> Result<(), Failure> {
    let mut de = serde_json::Deserializer::from_str(text);
    let r = RowSeed { m, out }
        .deserialize(&mut de)
        .and_then(|r| de.end().map(|_| r));
    match r {
        Ok(r) => r,
        Err(e) => Err((
            DeadLetterReason::MalformedJson,
            format!("not a JSON object: {e}"),
        )),
    }
}

/// Split one CSV record (RFC 4180 quoting) into `fields`.
fn split_csv<'a>(line: &'a str, fields: &mut Vec<std::borrow::Cow<'a, str>>) -> Result<(), String> {
    let line = line.strip_suffix('\n').unwrap_or(line);
    let line = line.strip_suffix('\r').unwrap_or(line);
    let b = line.as_bytes();
    let mut i = 0;
    loop {
        if i < b.len() && b[i] == b'"' {
            let mut s = String::new();
            i += 1;
            loop {
                match b.get(i) {
                    None => return Err("unterminated quoted field".into()),
                    Some(b'"') if b.get(i + 1) == Some(&b'"') => {
                        s.push('"');
                        i += 2;
                    }
                    Some(b'"') => {
                        i += 1;
                        break;
                    }
                    Some(_) => {
                        let ch = line[i..].chars().next().expect("in bounds");
                        s.push(ch);
                        i += ch.len_utf8();
                    }
                }
            }
            fields.push(std::borrow::Cow::Owned(s));
            match b.get(i) {
                None => return Ok(()),
                Some(b',') => i += 1,
                Some(_) => return Err("text after a closing quote".into()),
            }
        } else {
            let end = line[i..].find(',').map_or(b.len(), |e| i + e);
            fields.push(std::borrow::Cow::Borrowed(&line[i..end]));
            if end == b.len() {
                return Ok(());
            }
            i = end + 1;
        }
    }
}

fn parse_csv(
    m: &OrgMapping,
    header: &[String],
    text: &str,
    out: &mut Parsed,
) -> Result<(), Failure> {
    let mut fields = Vec::with_capacity(header.len());
    split_csv(text, &mut fields).map_err(|e| (DeadLetterReason::MalformedCsv, e))?;
    if fields.len() != header.len() {
        return Err((
            DeadLetterReason::MalformedCsv,
            format!(
                "{} fields where the header has {}",
                fields.len(),
                header.len()
            ),
        ));
    }
    for (name, field) in header.iter().zip(fields) {
        if let Some(t) = m.columns.get(name.as_str()) {
            // CSV has no types: an empty field is null, the rest is text.
            let v = if field.is_empty() {
                Scalar::Null
            } else {
                Scalar::Str(field)
            };
            assign(m, *t, name, v, out)?;
        }
    }
    Ok(())
}

fn parse_number(s: &str) -> Option<f64> {
    let t = s.trim();
    if t.is_empty() || t.eq_ignore_ascii_case("nan") {
        return Some(f64::NAN);
    }
    t.parse::<f64>().ok()
}

fn assign(
    m: &OrgMapping,
    t: Target,
    col: &str,
    v: Scalar,
    out: &mut Parsed,
) -> Result<(), Failure> {
    let wrong = |what: &str| {
        (
            DeadLetterReason::WrongType,
            format!("column `{col}`: expected {what}"),
        )
    };
    match t {
        Target::Machine => {
            out.machine = match v {
                Scalar::Str(s) => Some(s.trim().to_string()),
                Scalar::Int(i) => Some(i.to_string()),
                Scalar::Null => None,
                _ => {
                    return Err((
                        DeadLetterReason::MissingMachine,
                        format!("column `{col}` is not a string or an integer"),
                    ));
                }
            };
        }
        Target::Time => {
            let ts = match v {
                Scalar::Int(i) => Some(i),
                Scalar::Num(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Some(f as i64),
                Scalar::Str(s) => {
                    let s = s.trim();
                    if !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit()) {
                        s.parse().ok()
                    } else {
                        crate::time::parse_rfc3339_ms(s)
                    }
                }
                Scalar::Null => {
                    return Err((
                        DeadLetterReason::MissingTime,
                        format!("column `{col}` is null"),
                    ));
                }
                _ => None,
            };
            match ts {
                Some(ts) => out.ts = Some(ts),
                None => {
                    return Err((
                        DeadLetterReason::BadTime,
                        format!(
                            "column `{}` is neither RFC 3339 nor epoch milliseconds",
                            m.time_column
                        ),
                    ));
                }
            }
        }
        Target::Signal(i, SignalKind::Continuous) => {
            let x = match v {
                Scalar::Num(f) => f,
                Scalar::Int(n) => n as f64,
                Scalar::Null => f64::NAN,
                Scalar::Str(s) => parse_number(&s).ok_or_else(|| wrong("a number"))?,
                Scalar::Bool(_) | Scalar::Nested => return Err(wrong("a number")),
            };
            if x.is_infinite() {
                return Err((
                    DeadLetterReason::NonFinite,
                    format!("column `{col}` is infinite"),
                ));
            }
            out.values[i] = x;
        }
        Target::Signal(i, SignalKind::Boolean) => {
            out.values[i] = match v {
                Scalar::Bool(b) => b as u8 as f64,
                Scalar::Int(0) => 0.0,
                Scalar::Int(1) => 1.0,
                Scalar::Num(f) if f == 0.0 || f == 1.0 => f,
                Scalar::Null => f64::NAN,
                Scalar::Str(s) => match s.trim().to_ascii_lowercase().as_str() {
                    "true" | "1" | "on" | "yes" => 1.0,
                    "false" | "0" | "off" | "no" => 0.0,
                    "" | "nan" => f64::NAN,
                    _ => return Err(wrong("a boolean")),
                },
                _ => return Err(wrong("a boolean")),
            };
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
