//! The one conversion from core errors to Python exceptions.

use pyo3::create_exception;
use pyo3::exceptions::{PyRuntimeError, PyValueError};
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
    "A text is not valid UTF-8; args are (message, row) with the 0-based row in the array passed in."
);

/// Maps a core error to the Python exception a caller can act on.
pub fn to_py(err: skyfilter_core::Error) -> PyErr {
    match err {
        skyfilter_core::Error::ThreadPool(_) => PyRuntimeError::new_err(err.to_string()),
        _ => SkyfilterError::new_err(err.to_string()),
    }
}

/// A text at `row` of an array is not valid UTF-8.
pub fn invalid_text(row: usize) -> PyErr {
    InvalidTextError::new_err((format!("row {row}: text is not valid UTF-8"), row))
}
