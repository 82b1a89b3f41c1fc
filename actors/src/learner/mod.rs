//! The meta-learner's maths: pattern mining with exact tests and false
//! discovery control ([`patterns`], [`stats`]).

pub mod cycle;
pub mod patterns;
pub mod stats;
