//! grafana source.
