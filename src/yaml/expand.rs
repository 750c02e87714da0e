//! `${VAR}` expansion in `rules.yaml` values, so secrets and per-host settings can stay out of the
//! file.
//!
//! The syntax, a small subset of the shell's:
//!
//! | input | result |
//! |---|---|
//! | `${NAME}` | the value of `NAME`; an error when it is not set (an empty value is fine) |
//! | `${NAME:-default}` | the value of `NAME`, or `default` when it is unset or empty |
//! | `$$` | a literal `$` |
//! | `$` followed by anything else | a literal `$` (so `$5` and `$HOME` are left as they are) |
//!
//! `NAME` is `[A-Za-z_][A-Za-z0-9_]*`. The default runs up to the matching `}` and is expanded
//! in turn (`${A:-${B:-x}}`), but only when it is used. Values that come from the environment are
//! inserted as they are: they are never expanded again.

use std::path::Path;

/// How deeply defaults may nest `${...}` (`${A:-${B:-${C}}}` is a depth of 3).
const MAX_DEPTH: usize = 16;

/// Why a value could not be expanded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExpandError {
    /// `${NAME}` (without a default) names a variable that is not set.
    #[error(
        "environment variable `{name}` is not set (use `${{{name}:-default}}` to give a default)"
    )]
    Unset {
        /// The variable's name.
        name: String,
    },
    /// A malformed `${...}`: a bad variable name, or no closing `}`.
    #[error("{message}")]
    Syntax {
        /// What is wrong, for people.
        message: String,
        /// The byte offset in the input of the `$` that starts the malformed `${...}`.
        offset: usize,
    },
}

/// Expands `${NAME}`, `${NAME:-default}` and `$$` in `input`, looking variables up with `lookup`.
///
/// The whole input is checked for syntax errors first, so an error never depends on which
/// variables happen to be set. See the [module documentation](self) for the syntax.
pub fn expand(input: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, ExpandError> {
    if !input.contains('$') {
        return Ok(input.to_owned());
    }
    let mut parser = Parser { input, pos: 0 };
    let pieces = parser.pieces(0)?;
    let mut out = String::with_capacity(input.len());
    eval(&pieces, lookup, &mut out)?;
    Ok(out)
}

/// Looks a variable up in the process environment.
///
/// A value that is not valid UTF-8 is converted lossily rather than treated as unset.
pub fn env_lookup(name: &str) -> Option<String> {
    std::env::var_os(name).map(|value| value.to_string_lossy().into_owned())
}

/// Reads a secret from a file (a systemd credential, a Kubernetes secret volume), minus one
/// trailing newline (`\n` or `\r\n`), which editors and `echo` add.
///
/// Fails when the file cannot be read or is not UTF-8.
pub fn read_secret_file(path: &Path) -> Result<String, std::io::Error> {
    let mut secret = std::fs::read_to_string(path)?;
    if secret.ends_with("\r\n") {
        secret.truncate(secret.len() - 2);
    } else if secret.ends_with('\n') {
        secret.truncate(secret.len() - 1);
    }
    Ok(secret)
}

/// A parsed piece of the input.
#[derive(Debug)]
enum Piece<'a> {
    Literal(&'a str),
    Var {
        name: &'a str,
        default: Option<Vec<Piece<'a>>>,
    },
}

struct Parser<'a> {
    input: &'a str,
    pos: usize,
}

impl<'a> Parser<'a> {
    /// Parses pieces up to the end of the input or, when `depth > 0` (inside a default), up to an
    /// unmatched `}`, which is left for the caller.
    fn pieces(&mut self, depth: usize) -> Result<Vec<Piece<'a>>, ExpandError> {
        let mut pieces = Vec::new();
        let mut literal_start = self.pos;
        while let Some(c) = self.input[self.pos..].chars().next() {
            match c {
                '}' if depth > 0 => break,
                '$' => {
                    let dollar = self.pos;
                    let rest = &self.input[dollar + 1..];
                    if rest.starts_with('$') {
                        // `$$`: keep the first `$`, skip the second.
                        pieces.push(Piece::Literal(&self.input[literal_start..=dollar]));
                        self.pos = dollar + 2;
                        literal_start = self.pos;
                    } else if rest.starts_with('{') {
                        pieces.push(Piece::Literal(&self.input[literal_start..dollar]));
                        pieces.push(self.var(dollar, depth)?);
                        literal_start = self.pos;
                    } else {
                        self.pos += 1;
                    }
                }
                _ => self.pos += c.len_utf8(),
            }
        }
        pieces.push(Piece::Literal(&self.input[literal_start..self.pos]));
        pieces.retain(|piece| !matches!(piece, Piece::Literal("")));
        Ok(pieces)
    }

    /// Parses `${NAME}` or `${NAME:-default}` starting at the `$` at `dollar`.
    fn var(&mut self, dollar: usize, depth: usize) -> Result<Piece<'a>, ExpandError> {
        let syntax = |message: String| ExpandError::Syntax {
            message,
            offset: dollar,
        };
        if depth >= MAX_DEPTH {
            return Err(syntax(format!(
                "`${{...}}` nested more than {MAX_DEPTH} deep"
            )));
        }
        let name_start = dollar + 2;
        let after_brace = &self.input[name_start..];
        let name_len = after_brace
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(after_brace.len());
        let name = &after_brace[..name_len];
        let rest = &after_brace[name_len..];
        if name.is_empty() {
            return Err(syntax(match rest.chars().next() {
                None => "unclosed `${`: expected a variable name and `}`".to_owned(),
                Some('}') => "empty variable name in `${}`".to_owned(),
                Some(c) => format!(
                    "invalid variable name: `{c}` cannot start a name (names are letters, digits \
                     and `_`, not starting with a digit)"
                ),
            }));
        }
        if name.starts_with(|c: char| c.is_ascii_digit()) {
            return Err(syntax(format!(
                "invalid variable name `{name}`: names cannot start with a digit"
            )));
        }
        if rest.starts_with('}') {
            self.pos = name_start + name_len + 1;
            return Ok(Piece::Var {
                name,
                default: None,
            });
        }
        if rest.starts_with(":-") {
            self.pos = name_start + name_len + 2;
            let default = self.pieces(depth + 1)?;
            if !self.input[self.pos..].starts_with('}') {
                return Err(syntax(format!(
                    "unclosed `${{{name}:-`: expected `}}` after the default"
                )));
            }
            self.pos += 1;
            return Ok(Piece::Var {
                name,
                default: Some(default),
            });
        }
        Err(syntax(match rest.chars().next() {
            None => format!("unclosed `${{{name}`: expected `}}`"),
            Some(c) => format!(
                "unexpected `{c}` after `${{{name}`: expected `}}` or `:-default}}` (names are \
                 letters, digits and `_`)"
            ),
        }))
    }
}

fn eval(
    pieces: &[Piece<'_>],
    lookup: &dyn Fn(&str) -> Option<String>,
    out: &mut String,
) -> Result<(), ExpandError> {
    for piece in pieces {
        match piece {
            Piece::Literal(text) => out.push_str(text),
            Piece::Var { name, default } => match (lookup(name), default) {
                (Some(value), None) => out.push_str(&value),
                (Some(value), Some(_)) if !value.is_empty() => out.push_str(&value),
                (_, Some(default)) => eval(default, lookup, out)?,
                (None, None) => {
                    return Err(ExpandError::Unset {
                        name: (*name).to_owned(),
                    });
                }
            },
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(name: &str) -> Option<String> {
        match name {
            "AM_TOKEN" => Some("s3cret".to_owned()),
            "EMPTY" => Some(String::new()),
            "DOLLARS" => Some("${AM_TOKEN}$$".to_owned()),
            "中" => Some("never".to_owned()),
            _ => None,
        }
    }

    fn ok(input: &str) -> String {
        expand(input, &vars).unwrap_or_else(|err| panic!("{input:?}: {err}"))
    }

    fn syntax_error(input: &str) -> (String, usize) {
        match expand(input, &vars) {
            Err(ExpandError::Syntax { message, offset }) => (message, offset),
            other => panic!("{input:?}: expected a syntax error, got {other:?}"),
        }
    }

    #[test]
    fn expands_variables() {
        assert_eq!(ok("plain"), "plain");
        assert_eq!(ok("${AM_TOKEN}"), "s3cret");
        assert_eq!(ok("Bearer ${AM_TOKEN}!"), "Bearer s3cret!");
        assert_eq!(ok("${AM_TOKEN}${AM_TOKEN}"), "s3crets3cret");
        assert_eq!(ok("[${EMPTY}]"), "[]");
        assert_eq!(ok("钉钉 ${AM_TOKEN} 机器人"), "钉钉 s3cret 机器人");
        // Values are inserted as they are, never expanded again.
        assert_eq!(ok("${DOLLARS}"), "${AM_TOKEN}$$");
    }

    #[test]
    fn defaults() {
        assert_eq!(ok("${MISSING:-fallback}"), "fallback");
        assert_eq!(ok("${EMPTY:-fallback}"), "fallback");
        assert_eq!(ok("${AM_TOKEN:-fallback}"), "s3cret");
        assert_eq!(ok("${MISSING:-}"), "");
        assert_eq!(ok("${MISSING:-a b:c-d $5 $$}"), "a b:c-d $5 $");
        assert_eq!(ok("${MISSING:-${AM_TOKEN}}"), "s3cret");
        assert_eq!(ok("${MISSING:-${ALSO_MISSING:-deep}}!"), "deep!");
        // A default that is not used is not evaluated.
        assert_eq!(ok("${AM_TOKEN:-${MISSING}}"), "s3cret");
    }

    #[test]
    fn dollars() {
        assert_eq!(ok("$$"), "$");
        assert_eq!(ok("$${AM_TOKEN}"), "${AM_TOKEN}");
        assert_eq!(ok("costs $5"), "costs $5");
        assert_eq!(ok("$HOME and $"), "$HOME and $");
        assert_eq!(ok("$$$"), "$$");
        assert_eq!(ok("a}b"), "a}b");
    }

    #[test]
    fn unset_variables() {
        let err = expand("x ${NOPE}", &vars).unwrap_err();
        assert_eq!(
            err,
            ExpandError::Unset {
                name: "NOPE".to_owned()
            }
        );
        assert_eq!(
            err.to_string(),
            "environment variable `NOPE` is not set (use `${NOPE:-default}` to give a default)"
        );
        assert!(matches!(
            expand("${MISSING:-${NOPE}}", &vars),
            Err(ExpandError::Unset { name }) if name == "NOPE"
        ));
    }

    #[test]
    fn syntax_errors_point_at_the_dollar() {
        let (message, offset) = syntax_error("abc ${AM_TOKEN");
        assert_eq!(offset, 4);
        assert!(message.contains("unclosed"), "{message}");
        assert_eq!(syntax_error("${").1, 0);
        assert_eq!(syntax_error("ok ${}").1, 3);
        assert_eq!(syntax_error("${1ABC}").1, 0);
        assert_eq!(syntax_error("${A-B}").1, 0);
        assert_eq!(syntax_error("${A:=x}").1, 0);
        assert_eq!(syntax_error("${ A}").1, 0);
        // Byte offsets: "钉钉 " is 7 bytes.
        assert_eq!(syntax_error("钉钉 ${中}").1, 7);
        assert_eq!(syntax_error("${AM_TOKEN} ${MISSING:-x").1, 12);
        assert_eq!(syntax_error("${A:-${B:-x}").1, 0);
        assert_eq!(syntax_error("${A:-${B.C}}").1, 5);
        // Syntax errors win over unset variables, wherever they are.
        assert_eq!(syntax_error("${NOPE} ${").1, 8);
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        let deep = "${A:-".repeat(10_000) + &"}".repeat(10_000);
        let (message, _) = syntax_error(&deep);
        assert!(message.contains("nested"), "{message}");
        let fine = "${A:-".repeat(MAX_DEPTH) + "x" + &"}".repeat(MAX_DEPTH);
        assert_eq!(ok(&fine), "x");
    }

    #[test]
    fn secret_files_lose_one_trailing_newline() {
        let dir = std::env::temp_dir().join(format!("dingrelay-expand-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cases = [
            ("lf", "token\n", "token"),
            ("crlf", "token\r\n", "token"),
            ("two", "token\n\n", "token\n"),
            ("none", "token", "token"),
            ("spaces", " token \n", " token "),
        ];
        for (name, content, expected) in cases {
            let path = dir.join(name);
            std::fs::write(&path, content).unwrap();
            assert_eq!(read_secret_file(&path).unwrap(), expected, "{name}");
        }
        assert!(read_secret_file(&dir.join("missing")).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn env_lookup_reads_the_environment() {
        // PATH is set in any environment that runs the tests; this name is not.
        assert!(env_lookup("PATH").is_some());
        assert_eq!(env_lookup("DINGRELAY_TEST_SURELY_UNSET_VARIABLE"), None);
    }
}
