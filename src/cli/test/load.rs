//! Loading a test file: reads and validates it (every problem located at its node, by the config
//! loader's checker), loads the config it names with the file's variables, and checks each test
//! against that config, so a test that could never pass is an error of the file, not a failure.

use std::collections::HashMap;
use std::path::Path as FsPath;

use super::case::TestChecker;
use super::schema::{RawFile, serde_diagnostic};
use super::suite::{ConfigChoice, DEFAULT_NOW, Suite};
use crate::config::{Config, ConfigError};
use crate::text::plural;
use crate::yaml::diagnostic;
use crate::yaml::{Diagnostic, Location, Locations, Path};

/// Reads and validates a test file and loads its config. The error is the whole report, ready
/// to print: every problem found, located.
pub(super) fn load(path: &FsPath, choice: &ConfigChoice) -> Result<Suite, String> {
    let file = path.display().to_string();
    let text = match std::fs::read_to_string(path) {
        // A byte order mark (Notepad's) is not content; lines and columns are the same without.
        Ok(text) => match text.strip_prefix('\u{feff}') {
            Some(rest) => rest.to_owned(),
            None => text,
        },
        Err(error) => {
            return Err(format!(
                "{file}: cannot read the test file: {error}\nerror: {file}: no test of this file was run\n"
            ));
        }
    };
    let invalid = |diagnostics: Vec<Diagnostic>| {
        format!(
            "{}\nerror: {file}: {} error{}; no test of this file was run\n",
            diagnostic::render(&file, &text, &diagnostics),
            diagnostics.len(),
            plural(diagnostics.len())
        )
    };

    let locations = Locations::index(&text);
    let duplicates: Vec<Diagnostic> = locations
        .duplicate_keys()
        .into_iter()
        .map(|(path, location)| {
            Diagnostic::at(
                location,
                format!("duplicate key `{path}`: each key may appear once"),
            )
        })
        .collect();
    if !duplicates.is_empty() {
        return Err(invalid(duplicates));
    }
    let raw: RawFile = match serde_yaml::from_str(&text) {
        Ok(raw) => raw,
        Err(error) => {
            return Err(invalid(vec![crate::config::plain_serde_error(
                serde_diagnostic(&error),
            )]));
        }
    };

    let root = Path::root();
    let base_dir = path.parent().unwrap_or_else(|| FsPath::new(""));
    let mut checker = TestChecker::new(&locations, base_dir);

    let now = match &raw.now {
        Some(now) => checker.time(&root.key("now"), now),
        None => DEFAULT_NOW.parse().ok(),
    };

    let env: HashMap<String, String> = raw
        .env
        .iter()
        .map(|(name, value)| (name.clone(), value.0.clone()))
        .collect();
    // --config, else the file's own `config:`, else DINGRELAY_CONFIG, else rules.yaml next to it.
    let config_path = match (&choice.given, &raw.config, &choice.default) {
        (Some(given), _, _) => given.clone(),
        (None, Some(named), _) => base_dir.join(named),
        (None, None, Some(default)) => default.clone(),
        (None, None, None) => base_dir.join("rules.yaml"),
    };
    let config_file = config_path.display().to_string();
    let config_text = match std::fs::read_to_string(&config_path) {
        Ok(text) => Some(text),
        Err(error) => {
            let what = match (&choice.given, &raw.config, &choice.default) {
                (Some(_), _, _) => "config (from --config)",
                (None, Some(_), _) => "config",
                (None, None, Some(_)) => "config (from DINGRELAY_CONFIG)",
                (None, None, None) => "config (default: rules.yaml next to the test file)",
            };
            checker.error(
                &root.key("config"),
                format!("{what}: cannot read {config_file}: {error}"),
            );
            None
        }
    };
    if !checker.diagnostics().is_empty() {
        return Err(invalid(checker.into_diagnostics()));
    }
    let config = match config_text.map(|config_text| {
        let config_dir = config_path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or_else(|| FsPath::new("."));
        let lookup = |name: &str| env.get(name).cloned();
        Config::parse(&config_file, &config_text, config_dir, &lookup)
    }) {
        Some(Ok(config)) => config,
        Some(Err(error)) => return Err(config_failure(&file, &config_file, &error)),
        None => return Err(invalid(checker.into_diagnostics())),
    };

    if raw.tests.is_empty() {
        checker.error(
            &root.key("tests"),
            "tests: no tests; add at least one under `tests:`",
        );
    }
    let mut cases = Vec::new();
    let mut names: HashMap<String, Location> = HashMap::new();
    for (index, test) in raw.tests.iter().enumerate() {
        let at = root.key("tests").index(index);
        let name = test.name.0.trim().to_owned();
        let name_location = locations.nearest(&at.key("name"));
        if name.is_empty() {
            checker.error(
                &at.key("name"),
                format!("tests[{index}]: the name is empty"),
            );
        } else if let Some(first) = names.get(&name) {
            checker.error(
                &at.key("name"),
                format!(
                    "test `{name}`: another test has this name (line {}); names must be unique",
                    first.line
                ),
            );
        } else {
            names.insert(name.clone(), name_location);
        }
        let case_now = match &test.now {
            Some(text) => checker.time(&at.key("now"), text),
            None => now,
        };
        let Some(case_now) = case_now else {
            continue;
        };
        if let Some(case) = checker.case(&config, &at, &name, test, case_now) {
            cases.push(case);
        }
    }
    if !checker.diagnostics().is_empty() {
        let mut diagnostics = checker.into_diagnostics();
        diagnostics.sort_by_key(|d| d.location.map(|l| (l.line, l.column)));
        return Err(invalid(diagnostics));
    }
    Ok(Suite {
        file,
        config_file,
        config,
        cases,
    })
}

/// The report of a test file whose config does not load: the config's own errors, then what it
/// means for the test file.
fn config_failure(file: &str, config_file: &str, error: &ConfigError) -> String {
    format!(
        "{}\n\nerror: {file}: its config {config_file} is invalid ({} error{} above); no test of this file was run\n",
        error.rendered.trim_end(),
        error.diagnostics.len(),
        plural(error.diagnostics.len())
    )
}
