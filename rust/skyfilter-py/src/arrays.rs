//! Arrow arrays handed back to Python.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::UInt64Type;
use arrow_array::Array;
use arrow_schema::DataType;
use pyo3::prelude::*;
use skyfilter_core::views;

use crate::arrow_ffi::{to_pyarrow, PyArray};
use crate::error::{guarded, to_py, SkyfilterError};

fn row_numbers(rows: &PyArray, len: usize) -> PyResult<Vec<usize>> {
    let rows = match rows.array().data_type() {
        DataType::UInt64 if rows.array().null_count() == 0 => rows.array().as_primitive::<UInt64Type>().clone(),
        other => {
            return Err(SkyfilterError::new_err(format!(
                "rows must be a non-null uint64 array, got {other}"
            )))
        }
    };
    let rows: Vec<usize> = rows.values().iter().map(|&r| r as usize).collect();
    if let Some(&r) = rows.iter().find(|&&r| r >= len) {
        return Err(SkyfilterError::new_err(format!(
            "row {r} is out of range for an array of {len} rows"
        )));
    }
    Ok(rows)
}

/// The rows `rows` of a string_view array copied into a compact utf8 array (the kept rows of a batch read
/// with views, for a writer).
#[pyfunction]
pub fn string_rows(py: Python<'_>, array: PyArray, rows: PyArray) -> PyResult<Py<PyAny>> {
    guarded(|| {
        let a = array.array();
        let rows = row_numbers(&rows, a.len())?;
        let DataType::Utf8View = a.data_type() else {
            return Err(SkyfilterError::new_err(format!(
                "string_rows needs a string_view array, got {}",
                a.data_type()
            )));
        };
        let copied = py
            .detach(|| views::copy_rows(a.as_string_view(), &rows))
            .map_err(to_py)?;
        to_pyarrow(py, Arc::new(copied))
    })
}

/// The rows `rows` of a string array (utf8, large_utf8 or string_view) as a string_view array whose views
/// point into the input's data buffers: 16 bytes a row are written, the text is shared, not copied.
#[pyfunction]
pub fn string_views(py: Python<'_>, array: PyArray, rows: PyArray) -> PyResult<Py<PyAny>> {
    guarded(|| {
        let a = array.array();
        let rows = row_numbers(&rows, a.len())?;
        let taken = py.detach(|| match a.data_type() {
            DataType::Utf8 => Some(views::string_views(a.as_string::<i32>(), &rows, views::BLOCK_STEP)),
            DataType::LargeUtf8 => Some(views::string_views(a.as_string::<i64>(), &rows, views::BLOCK_STEP)),
            DataType::Utf8View => Some(views::take_views(a.as_string_view(), &rows)),
            _ => None,
        });
        match taken {
            Some(taken) => to_pyarrow(py, Arc::new(taken)),
            None => Err(SkyfilterError::new_err(format!(
                "string_views needs a string array (utf8, large_utf8 or string_view), got {}",
                a.data_type()
            ))),
        }
    })
}
