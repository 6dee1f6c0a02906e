//! c2sink: a DNS resolver that sinkholes malware command-and-control names and logs which client asked.
//!
//! The query path, in order: [`listen`] (sockets) → [`pipeline`] (assembles the steps) → [`wire`] (read the
//! query) → [`blocklist`] (is the name listed?) → [`sinkhole`] (answer locally) or [`cache`] / [`upstream`]
//! (answer from the upstream) → [`events`] (log the blocked client). [`config`] describes it all, [`server`]
//! runs it, [`reload`] swaps in changed lists while it runs, [`feed`] downloads lists.

pub mod blocklist;
pub mod cache;
pub mod config;
pub mod events;
pub mod feed;
pub mod listen;
pub mod pipeline;
pub mod reload;
pub mod server;
pub mod sinkhole;
pub mod upstream;
pub mod wire;
