//! json source.
