//! Background work of a server process.

pub mod callbacks;
pub mod escalation;
pub mod run;
pub mod scheduler;
