//! alertmanager source.
