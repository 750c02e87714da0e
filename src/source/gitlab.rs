//! gitlab source.
