//! Locations of YAML nodes.
