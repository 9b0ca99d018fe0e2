//! Training: the model registry, running `ml/train.py`, and the deploy gate.

pub mod python;
pub mod registry;
