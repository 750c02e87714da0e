//! `rules.yaml`: parsed into raw structs, then validated into [`Config`].
pub mod expand;
pub mod locate;
