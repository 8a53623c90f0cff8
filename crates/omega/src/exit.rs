//! Exit statuses (`spec/cli.md`): 0 success, 1 runtime failure, 2 usage or configuration error.

use std::process::ExitCode;

/// An error that asks for a particular exit status. Wrap a configuration error in
/// `UsageError` so that `main` exits 2; anything else exits 1.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Prints the error chain on stderr and picks the exit status.
pub fn report(err: &anyhow::Error) -> ExitCode {
    eprintln!("error: {err}");
    for cause in err.chain().skip(1) {
        eprintln!("  caused by: {cause}");
    }
    if err
        .chain()
        .any(|c| c.downcast_ref::<UsageError>().is_some())
    {
        ExitCode::from(2)
    } else {
        ExitCode::from(1)
    }
}
