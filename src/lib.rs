#![recursion_limit = "256"]

//! fnlb: a self-hosted load balancer with serverless functions behind it, speaking Tencent CLB and SCF.
//!
//! The map of the code is in ARCHITECTURE.md.

pub mod accounts;
pub mod admin;
pub mod api;
pub mod app;
pub mod caps;
pub mod cli;
pub mod client;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod console;
pub mod control;
pub mod functions;
pub mod ids;
pub mod proxy;
pub mod snapshot;
pub mod state;
pub mod stats;
pub mod store;
