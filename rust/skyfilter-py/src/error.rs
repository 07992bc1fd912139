//! The one conversion from core errors and panics to Python exceptions.
//!
//! Every binding runs its body under [`guarded`]: a panic (a bug) reaches Python as a [`SkyfilterError`] with
//! the panic's message, never as pyo3's `PanicException`, which derives from `BaseException` and escapes
//! `except Exception`. [`quiet_panics`] keeps the default panic report off stderr (set `RUST_BACKTRACE` to
//! see it): the exception carries the message.

use std::any::Any;
use std::io::ErrorKind;
use std::panic::{self, AssertUnwindSafe};

use pyo3::create_exception;
use pyo3::exceptions::{PyFileNotFoundError, PyOSError, PyPermissionError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::PyErr;

create_exception!(
    skyfilter._core,
    SkyfilterError,
    PyValueError,
    "Invalid arguments or data for a skyfilter kernel."
);
create_exception!(
    skyfilter._core,
    InvalidTextError,
    SkyfilterError,
    "A text cannot be read (not valid UTF-8, or too long); args are (message, row, reason) with the 0-based row \
     in the array passed in."
);

/// Maps a core error to the Python exception a caller can act on: a file that cannot be opened is the
/// `OSError` subclass of its kind (`FileNotFoundError`, `PermissionError`) with errno, message and path.
pub fn to_py(err: skyfilter_core::Error) -> PyErr {
    match err {
        skyfilter_core::Error::ThreadPool(_) => PyRuntimeError::new_err(err.to_string()),
        skyfilter_core::Error::InvalidUtf8 { text } => invalid_text(text),
        skyfilter_core::Error::TextTooLong { text, bytes } => {
            unreadable_text(text, &format!("text is too long: {}", skyfilter_core::too_long(bytes)))
        }
        skyfilter_core::Error::Io {
            path,
            kind,
            errno,
            message,
        } => {
            let args = (errno, message, path.into_os_string());
            match kind {
                ErrorKind::NotFound => PyFileNotFoundError::new_err(args),
                ErrorKind::PermissionDenied => PyPermissionError::new_err(args),
                _ => PyOSError::new_err(args),
            }
        }
        _ => SkyfilterError::new_err(err.to_string()),
    }
}

/// Runs a binding's `body`; a panic in it (on this thread or, through rayon, on a worker) becomes a
/// [`SkyfilterError`].
pub fn guarded<T>(body: impl FnOnce() -> PyResult<T>) -> PyResult<T> {
    panic::catch_unwind(AssertUnwindSafe(body)).unwrap_or_else(|payload| Err(panic_error(payload.as_ref())))
}

/// The exception for a panic's payload (from [`guarded`], or a joined thread).
pub fn panic_error(payload: &(dyn Any + Send)) -> PyErr {
    SkyfilterError::new_err(format!(
        "internal error in skyfilter._core (a bug; please report it): {}",
        panic_message(payload)
    ))
}

/// The message a panic's payload carries.
pub fn panic_message(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned())
}

/// Replaces the panic report on stderr by nothing unless `RUST_BACKTRACE` is set: panics reach Python as
/// exceptions carrying their message (see [`guarded`]).
pub fn quiet_panics() {
    let report = panic::take_hook();
    panic::set_hook(Box::new(move |info| {
        if std::env::var_os("RUST_BACKTRACE").is_some() {
            report(info);
        }
    }));
}

/// Panics with `message` inside a binding: for tests of the panic boundary.
#[pyfunction]
pub fn _panic(message: &str) -> PyResult<()> {
    guarded(|| panic!("{message}"))
}

/// A text at `row` of an array is not valid UTF-8.
pub fn invalid_text(row: usize) -> PyErr {
    unreadable_text(row, "text is not valid UTF-8")
}

/// The text at `row` of an array cannot be read, for `reason`.
fn unreadable_text(row: usize, reason: &str) -> PyErr {
    InvalidTextError::new_err((format!("row {row}: {reason}"), row, reason.to_owned()))
}
