//! prognos-dataflows: record types, configuration and the timely dataflow that
//! turns raw SCADA rows into features, predictions and alerts. No network I/O:
//! a pipeline is a function from input streams to output streams.

pub mod alerts;
pub mod config;
pub mod event_time;
pub mod features;
pub mod models;
pub mod operators;
pub mod pipeline;
pub mod records;
pub mod source;
pub mod stats;
pub mod time;
pub mod util;
