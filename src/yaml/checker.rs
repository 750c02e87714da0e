//! Checking a YAML document node by node: every problem is recorded as a [`Diagnostic`] located
//! at the node it is about, so one pass reports them all, and the caller decides whether any was
//! fatal. Values pass through `${VAR}` expansion and `*_file` secrets on the way.

use std::path::{Path as FsPath, PathBuf};

use secrecy::SecretString;

use super::diagnostic::Diagnostic;
use super::expand;
use super::locate::{self, Locations, Path};
use crate::text::escape_control;

/// A serde error as a diagnostic: the location serde found, and its message without the
/// trailing "at line L column C" (the diagnostic says that itself).
pub fn serde_diagnostic(error: &serde_yaml::Error) -> Diagnostic {
    let mut message = error.to_string();
    if let Some(at) = message.rfind(" at line ") {
        message.truncate(at);
    }
    // serde quotes the offending key or value: control characters in it (an escape sequence in
    // a file) are shown escaped, never sent to the terminal.
    let message = escape_control(&message).into_owned();
    Diagnostic {
        location: error.location().map(|l| locate::Location {
            line: l.line(),
            column: l.column(),
        }),
        message,
        mask_values: false,
    }
}

/// Collects the diagnostics of one validation pass, and knows where every node is.
pub struct Checker<'a> {
    pub locations: &'a Locations,
    pub lookup: &'a dyn Fn(&str) -> Option<String>,
    pub base_dir: &'a FsPath,
    pub diagnostics: Vec<Diagnostic>,
    pub warnings: Vec<String>,
}

impl Checker<'_> {
    /// Records an error about the node at `path`.
    pub fn error(&mut self, path: &Path, message: impl Into<String>) {
        self.diagnostics
            .push(Diagnostic::at(self.locations.nearest(path), message));
    }

    /// Records an error about the key of the mapping entry at `path` (a name, a duplicate).
    pub fn error_at_key(&mut self, path: &Path, message: impl Into<String>) {
        let location = self
            .locations
            .key(path)
            .unwrap_or_else(|| self.locations.nearest(path));
        self.diagnostics.push(Diagnostic::at(location, message));
    }

    /// Expands `${VAR}`s in the value at `path`; records the error and returns `None` on failure.
    pub fn expand(&mut self, path: &Path, value: &str) -> Option<String> {
        match expand::expand(value, self.lookup) {
            Ok(expanded) => Some(expanded),
            Err(error) => {
                self.error(path, format!("{path}: {error}"));
                None
            }
        }
    }

    /// A secret given inline (`key`, expanded) or from a file (`key_file`). Both at once is an
    /// error; an inline value that expands to nothing counts as absent (so `${TOKEN:-}` can make
    /// a secret optional).
    pub fn secret(
        &mut self,
        parent: &Path,
        key: &str,
        inline: Option<&str>,
        file: Option<&str>,
    ) -> Option<SecretString> {
        let file_key = format!("{key}_file");
        match (inline, file) {
            (Some(_), Some(_)) => {
                self.error_at_key(
                    &parent.key(&file_key),
                    format!("`{key}` and `{file_key}` are both set: keep one"),
                );
                None
            }
            (Some(value), None) => {
                let expanded = self.expand(&parent.key(key), value)?;
                let trimmed = expanded.trim();
                (!trimmed.is_empty()).then(|| SecretString::from(trimmed.to_owned()))
            }
            (None, Some(file)) => {
                let path = parent.key(&file_key);
                let file = self.expand(&path, file)?;
                let full = self.resolve(&file);
                match expand::read_secret_file(&full) {
                    Ok(value) if !value.trim().is_empty() => {
                        Some(SecretString::from(value.trim().to_owned()))
                    }
                    Ok(_) => {
                        self.error(&path, format!("{path}: {} is empty", full.display()));
                        None
                    }
                    Err(error) => {
                        self.error(
                            &path,
                            format!("{path}: cannot read {}: {error}", full.display()),
                        );
                        None
                    }
                }
            }
            (None, None) => None,
        }
    }

    /// A duration like `10m`, `24h` or `1h 30m` (default when absent); records the error.
    pub fn duration(
        &mut self,
        path: &Path,
        value: Option<&str>,
        default: std::time::Duration,
    ) -> Option<std::time::Duration> {
        let Some(value) = value else {
            return Some(default);
        };
        let value = self.expand(path, value)?;
        // `7d` too: a Span, with days of 24 hours (a retention is not a calendar question).
        let parsed = value
            .trim()
            .parse::<jiff::SignedDuration>()
            .ok()
            .or_else(|| {
                value
                    .trim()
                    .parse::<jiff::Span>()
                    .ok()?
                    .to_duration(jiff::SpanRelativeTo::days_are_24_hours())
                    .ok()
            });
        match parsed {
            Some(d) if !d.is_negative() && !d.is_zero() => d.try_into().ok(),
            _ => {
                self.error(
                    path,
                    format!(
                        "{path}: `{value}` is not a positive duration like 30s, 10m, 24h, 7d or 1h 30m"
                    ),
                );
                None
            }
        }
    }

    /// A path from the config, relative to the config file's directory.
    pub fn resolve(&self, path: &str) -> PathBuf {
        let path = FsPath::new(path);
        if path.is_absolute() {
            return path.to_path_buf();
        }
        // `./data` next to `./rules.yaml` is `data`, not `././data`.
        let path = path.strip_prefix(".").unwrap_or(path);
        if self.base_dir == FsPath::new(".") {
            path.to_path_buf()
        } else {
            self.base_dir.join(path)
        }
    }
}
