//! dingrelay's integration tests, in one binary with a module per area: on 2 cores, linking a
//! binary per file was most of `cargo test`. Run one area with `cargo test --test integration
//! <module>::`, e.g. `cargo test --test integration serve::`.

mod app_api;
mod app_robots;
mod cli;
mod config_errors;
mod console;
mod cookbook;
mod corpus;
mod crash;
mod dingtalk_messages;
mod docs;
mod layering;
mod operate;
mod outbox;
mod process;
mod properties;
mod rule_tests;
mod rules;
mod serve;
mod snapshots;
mod sources;
mod support;
mod templates;
