//! Background work of a server process.

pub mod callbacks;
pub mod escalation;
pub mod scheduler;
