//! Dataflow operators, one per file, each stating its semantics in its header.

pub mod alerts;
pub mod features;
pub mod flushing_sink;
pub mod inference;
pub mod ingest;
pub mod ordered_sink;
pub mod schema_map;
