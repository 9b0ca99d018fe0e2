//! Training: the model registry, running `ml/train.py`, and the deploy gate.

pub mod bootstrap;
pub mod python;
pub mod registry;
