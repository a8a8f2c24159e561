//! The service domain, free of I/O: which changes need a rollout
//! ([`change`]) and the service state machine ([`state`]).

pub mod change;
pub mod state;
