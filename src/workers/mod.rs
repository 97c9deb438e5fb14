//! Background work of a server process.

pub mod scheduler;
