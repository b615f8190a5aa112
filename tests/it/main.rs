//! fnlb's integration tests: one binary, fnlb started as a real process per test.

mod api;
mod apply;
mod asynchronous;
mod clb_trigger;
mod cli;
mod conformance;
mod console;
mod custom_config;
mod custom_runtime;
mod failover;
mod failures;
mod harness;
mod https;
mod isolation;
mod layer4;
mod limits;
mod namespaces;
mod node;
mod persistence;
mod protection;
mod reload;
mod scenarios;
mod sdk;
mod serve;
mod servers;
mod versions;
