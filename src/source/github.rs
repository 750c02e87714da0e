//! github source.
