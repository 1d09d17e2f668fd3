//! The compiler's passes, one rule each (SPEC §3). Every pass is a pure
//! function from IR to IR that records what it did in [`Ir::rewrites`].
//!
//! Passes that replace a node by another keep a `redirect` table while they
//! walk the arena front to back: a node's inputs all come before it, so they
//! are final when it is reached. Replaced nodes are left unreferenced and
//! swept at the end.
//!
//! [`Ir::rewrites`]: super::ir::Ir::rewrites

pub mod dead;
pub mod dedupe;
pub mod drop_scratch;
pub mod flatten;
pub mod fuse;
pub mod lower;
