//! The commands that do not run the daemon: `check` and `render`.

pub mod check;
pub mod render;
