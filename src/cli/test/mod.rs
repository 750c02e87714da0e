//! `dingrelay test`: rule tests, in the spirit of `promtool test rules`.
//!
//! A test file is YAML: the config it tests (default `rules.yaml` next to it), the time templates
//! see (`now`), the variables the config's `${...}` see (`env`; nothing else is read from the
//! environment), and a list of tests. Each test is a payload as a sender posts it, and either the
//! exact list of rule → robot messages it must produce, in order, with assertions on each
//! (`expect`), or the status the daemon would refuse it with (`refused`).
//!
//! Payloads take the daemon's path: source parsing, rule routing and DingTalk validation.
//! Authentication is not checked (as in `render`), nothing is queued or sent.
//!
//! A test file that cannot be read, is not valid, or names what the config does not have is
//! reported like a config error, `file:line:col: what is wrong` with the line and a caret, and
//! none of its tests runs.

mod assert;
mod diff;
mod load;
mod outcome;
mod schema;
mod suite;

use std::io::Write;
use std::path::PathBuf;

use crate::text::{escape_control as shown, plural};

pub use load::{DEFAULT_NOW, REFUSAL_STATUSES};

/// Runs every test of every file, writing `ok`/`FAIL` lines, the differences and a summary to
/// `out`. Returns the exit code: 0 when every test passed, 1 when a test failed, 2 when a test
/// file could not be read or is invalid (its tests are not run; the other files still are).
pub fn run(files: &[PathBuf], out: &mut dyn Write) -> u8 {
    if files.is_empty() {
        let _ = writeln!(
            out,
            "error: no test file given (e.g. dingrelay test rules.test.yaml)"
        );
        return 2;
    }
    let mut passed = 0;
    let mut failed = 0;
    let mut invalid = 0;
    for (i, file) in files.iter().enumerate() {
        if i > 0 {
            let _ = writeln!(out);
        }
        let suite = match load::load(file) {
            Ok(suite) => suite,
            Err(error) => {
                let _ = write!(out, "{error}");
                invalid += 1;
                continue;
            }
        };
        let _ = writeln!(
            out,
            "# {}: {} test{} of {}",
            suite.file,
            suite.cases.len(),
            plural(suite.cases.len()),
            suite.config_file
        );
        for case in &suite.cases {
            let outcome = outcome::Outcome::of(&suite, case);
            let problems = assert::check(&suite, case, &outcome);
            if problems.is_empty() {
                passed += 1;
                let _ = writeln!(out, "ok   {}", shown(&case.name));
            } else {
                failed += 1;
                let _ = writeln!(
                    out,
                    "FAIL {} ({}:{})",
                    shown(&case.name),
                    suite.file,
                    case.location
                );
                for line in problems {
                    let _ = writeln!(out, "  {line}");
                }
            }
        }
    }
    let _ = writeln!(out);
    let mut summary = format!("{passed} passed, {failed} failed");
    if invalid > 0 {
        summary.push_str(&format!(
            ", {invalid} test file{} invalid (not run)",
            plural(invalid)
        ));
    }
    let _ = writeln!(out, "{summary}");
    if invalid > 0 {
        2
    } else if failed > 0 {
        1
    } else {
        0
    }
}
