//! The commands: `check`, `render`, `test`, `serve` and `outbox`.

pub mod check;
pub mod outbox;
pub mod render;
pub mod serve;
pub mod test;
