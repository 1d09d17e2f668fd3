//! Filesystem primitives.
pub mod pattern;
