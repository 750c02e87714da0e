//! Template filters.
