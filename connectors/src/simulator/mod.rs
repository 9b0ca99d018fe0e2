//! Deterministic simulator of a fleet of batch integral-quench / carburizing
//! furnaces across several organizations, each writing its own raw schema,
//! with ground-truth failure events. Physics and defaults: `CONTEXT.md`.

mod config;
mod error;
mod live;
mod physics;
mod plan;
mod render;
mod run;
mod schema;
mod source;

#[cfg(test)]
mod tests;

pub use config::{
    DEFAULT_DURATION_MS, DEFAULT_FAILURE_RATE_PER_MACHINE_DAY, DEFAULT_INTERVAL_MS,
    DEFAULT_NEAR_MISS_RATIO, DEFAULT_START_MS, MAX_FAILURE_RATE_PER_MACHINE_DAY, MAX_INTERVAL_MS,
    MAX_MACHINES_PER_ORG, MAX_NEAR_MISS_RATIO, MIN_INTERVAL_MS, OutputFormat, SimConfig, Speed,
};
pub use error::SimError;
pub use live::{FailureHook, SimulatorSource};
pub use plan::{
    COMPONENT_WEIGHTS, LEAD_MS, MIN_GAP_MS, NEAR_MISS_RECOVER_MS, NEAR_MISS_STOP, REPAIR_MS,
};
pub use render::rfc3339_ms;
pub use run::{
    ORG_FIELD, OrgSummary, SimSummary, failure_events, run_to_dir, run_to_dir_with_threads,
    run_to_records, run_to_writer,
};
pub use schema::{BoolFormat, Component, OrgSchema, Signal, TimeFormat, standard_component_names};
pub use source::{Failure, OrgStream, RowInfo, machine_seed};
