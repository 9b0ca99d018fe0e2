//! prognos: multi-tenant streaming predictive maintenance. The binary's CLI,
//! configuration loading, runtime wiring, HTTP API and metrics.

pub mod api;
pub mod auth;
pub mod backtest;
pub mod cli;
pub mod commands;
pub mod control;
pub mod controller;
pub mod embedded;
pub mod heartbeat;
pub mod metrics;
pub mod onnx_runtime;
pub mod orgs;
pub mod outputs;
pub mod recovery;
pub mod replay;
pub mod service;
pub mod settings;
pub mod simulation;
pub mod status;
pub mod store;
pub mod training;
pub mod worker;
