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
//!
//! This file runs the tests and reports them. A file is read as `schema` says, checked by `load`
//! and `case` into a `suite` of ready tests; `handling` is what the daemon would do with a test's
//! payload, `assert` what is wrong with it, with a `diff` of texts.

mod assert;
mod case;
mod diff;
mod handling;
mod load;
mod schema;
mod suite;

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::output::exit_code;
use crate::text::{escape_control as shown, plural};
use handling::Handling;

pub use suite::{ConfigChoice, DEFAULT_NOW, REFUSAL_STATUSES};

/// Runs every test of every file, writing `ok`/`FAIL` lines, the differences and a summary to
/// `out`, and why a test file cannot run to `err`. Returns the exit code: 0 when every test
/// passed, 1 when a test failed, 2 when a test file could not be read or is invalid (its tests
/// are not run; the other files still are) or the report could not be written.
pub fn run(
    files: &[PathBuf],
    config: &ConfigChoice,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> u8 {
    exit_code(run_files(files, config, out, err), 2)
}

/// How the tests went so far.
#[derive(Debug, Default)]
struct Tally {
    passed: usize,
    failed: usize,
    /// Test files that could not be read or are invalid: none of their tests ran.
    invalid: usize,
}

impl Tally {
    /// `3 passed, 1 failed`, then how many files were invalid, if any.
    fn summary(&self) -> String {
        let Tally {
            passed,
            failed,
            invalid,
        } = self;
        let mut summary = format!("{passed} passed, {failed} failed");
        if *invalid > 0 {
            summary.push_str(&format!(
                ", {invalid} test file{} invalid (not run)",
                plural(*invalid)
            ));
        }
        summary
    }

    /// The exit code of [`run`].
    fn exit_code(&self) -> u8 {
        if self.invalid > 0 {
            2
        } else if self.failed > 0 {
            1
        } else {
            0
        }
    }
}

/// [`run`], failing on the first write that fails.
fn run_files(
    files: &[PathBuf],
    config: &ConfigChoice,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> io::Result<u8> {
    if files.is_empty() {
        writeln!(
            err,
            "error: no test file given (e.g. dingrelay test rules.test.yaml)"
        )?;
        return Ok(2);
    }
    let mut tally = Tally::default();
    for (i, file) in files.iter().enumerate() {
        if i > 0 {
            writeln!(out)?;
        }
        run_file(file, config, &mut tally, out, err)?;
    }
    writeln!(out)?;
    writeln!(out, "{}", tally.summary())?;
    Ok(tally.exit_code())
}

/// Runs the tests of one file and reports each, or reports why the file cannot be run.
fn run_file(
    file: &Path,
    config: &ConfigChoice,
    tally: &mut Tally,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> io::Result<()> {
    let suite = match load::load(file, config) {
        Ok(suite) => suite,
        Err(error) => {
            tally.invalid += 1;
            return write!(err, "{error}");
        }
    };
    writeln!(
        out,
        "# {}: {} test{} of {}",
        suite.file,
        suite.cases.len(),
        plural(suite.cases.len()),
        suite.config_file
    )?;
    for case in &suite.cases {
        let handling = Handling::of(&suite, case);
        let problems = assert::check(&suite, case, &handling);
        if problems.is_empty() {
            tally.passed += 1;
            writeln!(out, "ok   {}", shown(&case.name))?;
        } else {
            tally.failed += 1;
            writeln!(
                out,
                "FAIL {} ({}:{})",
                shown(&case.name),
                suite.file,
                case.location
            )?;
            for line in problems {
                writeln!(out, "  {line}")?;
            }
        }
    }
    Ok(())
}
