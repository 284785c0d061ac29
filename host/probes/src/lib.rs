//! Built-in probes behind Status rows of their own: NATS communication ([`nats`]; async-nats
//! is used only here) and NIC <name> ([`nic`]). The Configuration row is the kernel's (it
//! compares the pair's settings over the peer link); the RTE Count's watchdog is in duet-base
//! (the kernel times its core calls with it).

#![warn(clippy::too_many_lines)]

pub mod nats;
pub mod nic;
