//! The line diff `dingrelay test` shows when a text differs from the expected one.

use std::convert::Infallible;

use similar::algorithms::{DiffHook, lcs};

use crate::text::escape_control as shown;

/// Lines of context shown around each change of a text diff.
const DIFF_CONTEXT: usize = 2;

/// One line of the edit script from the expected text to the actual one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op<'a> {
    Same(&'a str),
    Removed(&'a str),
    Added(&'a str),
}

/// Above this many line pairs, the diff does not look for common lines: it shows all expected
/// lines removed and all actual lines added (DingTalk texts are short; this bounds the work).
const DIFF_LIMIT: usize = 4_000_000;

/// A line diff of `expected` and `actual`: `- | ` lines only expected, `+ | ` lines only
/// actual, `  | ` common lines around the changes (at most [`DIFF_CONTEXT`] each side; `  ...`
/// for the rest). The `|` keeps a text's own leading `-` or `+` (a markdown list) apart from the
/// marker. Trailing spaces of changed lines are shown as `·`, so a difference there is visible.
pub(super) fn line_diff(expected: &str, actual: &str) -> Vec<String> {
    let old: Vec<&str> = expected.split('\n').collect();
    let new: Vec<&str> = actual.split('\n').collect();
    let ops = diff_ops(&old, &new);
    let changed: Vec<bool> = ops.iter().map(|op| !matches!(op, Op::Same(_))).collect();
    let near_change = |i: usize| {
        let from = i.saturating_sub(DIFF_CONTEXT);
        let to = (i + DIFF_CONTEXT).min(ops.len().saturating_sub(1));
        changed[from..=to].iter().any(|c| *c)
    };
    let mut lines = Vec::new();
    let mut skipped = false;
    for (i, op) in ops.iter().enumerate() {
        let line = match op {
            Op::Same(line) if near_change(i) => format!("  | {}", shown(line)),
            Op::Same(_) => {
                if !skipped {
                    lines.push("  ...".to_owned());
                    skipped = true;
                }
                continue;
            }
            Op::Removed(line) => format!("- | {}", visible_end(line)),
            Op::Added(line) => format!("+ | {}", visible_end(line)),
        };
        skipped = false;
        lines.push(line.trim_end().to_owned());
    }
    lines
}

/// The line with its trailing spaces and tabs shown as `·` and `→`.
fn visible_end(line: &str) -> String {
    let body = line.trim_end_matches([' ', '\t']);
    let tail: String = line[body.len()..]
        .chars()
        .map(|c| if c == '\t' { '→' } else { '·' })
        .collect();
    format!("{}{tail}", shown(body))
}

/// The longest-common-subsequence edit script from `old` to `new` (similar's LCS: at a fork,
/// the expected line is removed before the actual one is added).
fn diff_ops<'a>(old: &[&'a str], new: &[&'a str]) -> Vec<Op<'a>> {
    // Common lines at both ends are left out of the LCS: they need no table, and similar 2.7's
    // LCS strips them too but then fills its table from the start of the slices instead of from
    // what is left, which misplaces lines (so it is given the middle alone).
    let prefix = old.iter().zip(new).take_while(|(a, b)| a == b).count();
    let suffix = old[prefix..]
        .iter()
        .rev()
        .zip(new[prefix..].iter().rev())
        .take_while(|(a, b)| a == b)
        .count();
    let (old_mid, new_mid) = (
        &old[prefix..old.len() - suffix],
        &new[prefix..new.len() - suffix],
    );
    let mut script = Script {
        old: old_mid,
        new: new_mid,
        ops: old[..prefix].iter().map(|l| Op::Same(l)).collect(),
    };
    if old_mid.len().saturating_mul(new_mid.len()) > DIFF_LIMIT {
        script.ops.extend(old_mid.iter().map(|l| Op::Removed(l)));
        script.ops.extend(new_mid.iter().map(|l| Op::Added(l)));
    } else {
        let Ok(()) = lcs::diff(
            &mut script,
            old_mid,
            0..old_mid.len(),
            new_mid,
            0..new_mid.len(),
        );
    }
    let mut ops = script.ops;
    ops.extend(old[old.len() - suffix..].iter().map(|l| Op::Same(l)));
    ops
}

/// Collects similar's edit script, line by line.
struct Script<'s, 'a> {
    old: &'s [&'a str],
    new: &'s [&'a str],
    ops: Vec<Op<'a>>,
}

impl DiffHook for Script<'_, '_> {
    type Error = Infallible;

    fn equal(&mut self, old_index: usize, _: usize, len: usize) -> Result<(), Infallible> {
        let lines = &self.old[old_index..old_index + len];
        self.ops.extend(lines.iter().map(|l| Op::Same(l)));
        Ok(())
    }

    fn delete(&mut self, old_index: usize, old_len: usize, _: usize) -> Result<(), Infallible> {
        let lines = &self.old[old_index..old_index + old_len];
        self.ops.extend(lines.iter().map(|l| Op::Removed(l)));
        Ok(())
    }

    fn insert(&mut self, _: usize, new_index: usize, new_len: usize) -> Result<(), Infallible> {
        let lines = &self.new[new_index..new_index + new_len];
        self.ops.extend(lines.iter().map(|l| Op::Added(l)));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_diff_shows_changes_with_context() {
        let expected = "a\nb\nc\nd\ne\nf\ng\nh";
        let actual = "a\nb\nc\nd\nE\nf\ng\nh";
        assert_eq!(
            line_diff(expected, actual),
            vec![
                "  ...", "  | c", "  | d", "- | e", "+ | E", "  | f", "  | g", "  ..."
            ]
        );
        assert_eq!(line_diff("x", "x\ny"), vec!["  | x", "+ | y"]);
        assert_eq!(line_diff("", "y"), vec!["- |", "+ | y"]);
        assert_eq!(line_diff("a  ", "a"), vec!["- | a··", "+ | a"]);
        assert_eq!(
            line_diff("- a\n- b", "- a\n+ b"),
            vec!["  | - a", "- | - b", "+ | + b"]
        );
    }

    #[test]
    fn large_texts_are_diffed_without_a_table() {
        let old: String = (0..3000).map(|i| format!("old {i}\n")).collect();
        let new: String = (0..3000).map(|i| format!("new {i}\n")).collect();
        let diff = line_diff(&old, &new);
        assert_eq!(diff.iter().filter(|l| l.starts_with("- ")).count(), 3000);
        assert_eq!(diff.iter().filter(|l| l.starts_with("+ ")).count(), 3000);
    }

    #[test]
    fn shown_escapes_control_characters() {
        assert_eq!(shown("a\u{1b}[31mb"), "a\\u{1b}[31mb");
        assert_eq!(visible_end("x\t "), "x→·");
    }
}
