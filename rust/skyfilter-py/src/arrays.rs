//! Arrow arrays handed back to Python.

use arrow_array::ArrayRef;
use pyo3::prelude::*;
use pyo3_arrow::PyArray;

/// `array` as a pyarrow array (through the C data interface, no copy).
pub fn to_pyarrow(py: Python<'_>, array: ArrayRef) -> PyResult<Py<PyAny>> {
    Ok(PyArray::from_array_ref(array).to_pyarrow(py)?.unbind())
}
