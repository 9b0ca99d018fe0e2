//! The furnace simulator's view of a configuration: which simulated schema
//! each org's columns describe (used by `prognos simulate`, the embedded
//! `prognos run` and the first-model backfill).

use anyhow::Context;
use prognos_connectors::simulator::{BoolFormat, Component, OrgSchema, Signal, TimeFormat};
use prognos_dataflows::config::Config;

/// The org schemas a configuration describes: the built-in layout when the org
/// matches one (same id and columns), else RFC 3339 times, true/false flags.
pub fn schemas_from_config(cfg: &Config) -> anyhow::Result<Vec<OrgSchema>> {
    let builtin = OrgSchema::builtin(3);
    let mut out = Vec::new();
    for (id, org) in &cfg.orgs {
        let mut columns = Vec::new();
        for s in &org.signals {
            let sig = Signal::from_name(&s.name).with_context(|| {
                format!(
                    "org {id}: signal `{}` is not one the furnace simulator produces",
                    s.name
                )
            })?;
            columns.push((sig, s.column.clone()));
        }
        // Each simulated failure is named as the org's failure signal for its fault
        // flag says; without one, the standard name.
        let component_names = Component::ALL.map(|c| {
            org.failure_signals
                .iter()
                .find(|f| f.signal == c.fault_signal().name())
                .map_or_else(|| c.name().to_string(), |f| f.component.clone())
        });
        let schema = match builtin.iter().find(|b| &b.org_id == id) {
            Some(b)
                if b.columns == columns
                    && b.machine_column == org.machine_column
                    && b.time_column == org.time_column
                    && b.component_names == component_names =>
            {
                b.clone()
            }
            _ => OrgSchema {
                org_id: id.clone(),
                machine_column: org.machine_column.clone(),
                time_column: org.time_column.clone(),
                time_format: TimeFormat::Rfc3339,
                bool_format: BoolFormat::TrueFalse,
                machine_prefix: "M-".into(),
                columns,
                component_names,
            },
        };
        out.push(schema);
    }
    Ok(out)
}
