//! Background work of a server process.

pub mod escalation;
pub mod scheduler;
