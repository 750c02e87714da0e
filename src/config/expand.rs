//! ${VAR} expansion.
