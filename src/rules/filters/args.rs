//! Filter arguments: given by position or by keyword, never both, and errors that say which.

use minijinja::value::Kwargs;
use minijinja::{Error, ErrorKind};

/// An optional filter argument that may be given by position or by keyword, but not both.
pub(super) fn arg<'k, T>(
    name: &'k str,
    positional: Option<T>,
    kwargs: &'k Kwargs,
) -> Result<Option<T>, Error>
where
    T: minijinja::value::ArgType<'k, Output = T>,
{
    let keyword: Option<T> = kwargs.get(name)?;
    match (positional, keyword) {
        (Some(_), Some(_)) => Err(Error::new(
            ErrorKind::TooManyArguments,
            format!("argument `{name}` given both by position and by keyword"),
        )),
        (Some(value), None) | (None, Some(value)) => Ok(Some(value)),
        (None, None) => Ok(None),
    }
}

/// Fails with "missing argument" when a required argument is absent.
pub(super) fn required<T>(filter: &str, name: &str, value: Option<T>) -> Result<T, Error> {
    value.ok_or_else(|| {
        Error::new(
            ErrorKind::MissingArgument,
            format!("`{filter}` needs the argument `{name}`"),
        )
    })
}

pub(super) fn invalid(message: String) -> Error {
    Error::new(ErrorKind::InvalidOperation, message)
}
