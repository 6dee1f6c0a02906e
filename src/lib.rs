//! c2sink: a DNS resolver that sinkholes malware command-and-control names and logs which client asked.
//!
//! The query path, in order: [`listen`] (sockets) → [`admission`] (who may ask, how fast) → [`pipeline`]
//! (assembles the steps) → [`wire`] (read the query) and [`protocol`] (rules for odd queries) → [`blocklist`]
//! (is the name listed?) → [`sinkhole`] (answer locally) or [`cache`] / [`inflight`] / [`upstream`] (answer
//! from the upstream, one query for all who ask the same at once) → [`events`] (log the blocked client). [`config`] describes it all, [`server`]
//! runs it, [`reload`] swaps in changed lists while it runs, [`feed`] downloads lists.

pub mod admin;
pub mod admission;
pub mod alerts;
pub mod blocklist;
pub mod cache;
pub mod clients;
pub mod config;
pub mod encrypted;
pub mod events;
pub mod feed;
pub mod health;
pub mod hunt;
pub mod inflight;
pub mod listen;
pub mod pipeline;
pub mod privilege;
pub mod protocol;
pub mod reload;
pub mod report;
pub mod sched;
pub mod server;
pub mod sinkhole;
pub mod special;
pub mod telemetry;
pub mod tls_listen;
pub mod trap;
pub mod udp_batch;
pub mod upstream;
pub mod wire;
