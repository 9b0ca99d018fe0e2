//! Model versions at run time: metadata, ONNX sessions checked at load, batched
//! scoring with a deadline, and the LRU cache shared by a process's workers. Loading uses the process's ONNX Runtime
//! [`Environment`](ort::environment::Environment), which the binary creates from the
//! library in `ml/.venv` (or `ORT_DYLIB_PATH`).

pub mod activations;
pub mod cache;
pub mod metadata;
pub mod runner;
pub mod trees;
pub mod watchdog;

pub use cache::{CacheLimits, CacheStats, ModelCache, ModelLoadRecord};
pub use metadata::ModelMetadata;
pub use runner::{LoadedModel, ModelError, Score};
