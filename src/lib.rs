//! c2sink: a DNS resolver that sinkholes malware command-and-control names and logs which client asked.
//!
//! The query path, in order: [`listen`] (sockets) → [`pipeline`] (assembles the steps) → [`wire`] (read the
//! query) → [`blocklist`] (is the name listed?) → [`sinkhole`] (answer locally) or [`cache`] / [`upstream`]
//! (answer from the upstream) → [`events`] (log the blocked client). [`config`] describes it all, [`server`]
//! runs it.

pub mod admin;
pub mod blocklist;
pub mod cache;
pub mod config;
pub mod encrypted;
pub mod events;
pub mod health;
pub mod listen;
pub mod pipeline;
pub mod privilege;
pub mod server;
pub mod sinkhole;
pub mod telemetry;
pub mod tls_listen;
pub mod upstream;
pub mod wire;
