//! Where a command's report ends: the `out` each command writes to can fail (a closed pipe, a full
//! disk). Commands write through [`io::Result`] and turn the result into their exit code here,
//! once, so a failed write is never silently dropped.

use std::io;

/// The exit code of a command that wrote its report: the code `written` carries, or `failed` when
/// the report could not be written. That error is logged (to stderr), since nothing more can go
/// to `out`.
pub fn exit_code(written: io::Result<u8>, failed: u8) -> u8 {
    match written {
        Ok(code) => code,
        Err(error) => {
            tracing::error!("Cannot write the output: {error}.");
            failed
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_write_ends_with_the_failure_code() {
        assert_eq!(exit_code(Ok(1), 2), 1);
        assert_eq!(exit_code(Err(io::Error::other("closed pipe")), 2), 2);
    }
}
