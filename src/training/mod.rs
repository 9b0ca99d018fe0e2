//! Training: the history store, labels, the one training pipeline, the job
//! queue and scheduler, the model registry, running `ml/train.py`.

pub mod bootstrap;
pub mod failures;
pub mod features;
pub mod history;
pub mod jobs;
pub mod labels;
pub mod operating_point;
pub mod pipeline;
pub mod python;
pub mod registry;
pub mod scheduler;
pub mod shipping;
