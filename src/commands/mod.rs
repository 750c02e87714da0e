//! The commands: `check`, `render`, `serve` and `outbox`.

pub mod check;
pub mod outbox;
pub mod render;
pub mod serve;
