//! prognos-dataflows: record types, configuration and the timely dataflow that
//! turns raw SCADA rows into features, predictions and alerts. No network I/O:
//! a pipeline is a function from input streams to output streams.

pub mod config;
pub mod records;
pub mod time;
