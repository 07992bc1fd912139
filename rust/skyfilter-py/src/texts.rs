//! Zero-copy views of Arrow string arrays (Utf8, LargeUtf8, Utf8View) as `Option<&str>` rows.

use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use arrow_array::{Array, ArrayRef, BinaryArray, BinaryViewArray, LargeBinaryArray};
use arrow_schema::DataType;
use pyo3::PyResult;
use skyfilter_core::ByteRows;

use crate::arrow_ffi::PyArray;
use crate::error::{invalid_text, SkyfilterError};

/// The bytes of a string array, whatever its layout; the buffers are shared, not copied.
pub enum Texts {
    Utf8(BinaryArray),
    LargeUtf8(LargeBinaryArray),
    Utf8View(BinaryViewArray),
    /// An all-null column (Arrow's `null` type), e.g. from a JSON field that is always null.
    Null(usize),
}

impl Texts {
    /// Accepts a string array; `what` names it in the error for any other type.
    pub fn new(array: &ArrayRef, what: &str) -> PyResult<Self> {
        Ok(match array.data_type() {
            DataType::Utf8 => Texts::Utf8(array.as_string::<i32>().clone().into()),
            DataType::LargeUtf8 => Texts::LargeUtf8(array.as_string::<i64>().clone().into()),
            DataType::Utf8View => Texts::Utf8View(array.as_string_view().clone().to_binary_view()),
            DataType::Null => Texts::Null(array.len()),
            other => {
                return Err(SkyfilterError::new_err(format!(
                    "{what} must be a string array (utf8, large_utf8 or string_view), got {other}"
                )))
            }
        })
    }

    /// Every row as text, null as `None`; the rows are checked to be valid UTF-8 (Arrow producers do
    /// not all validate), and the first invalid row is reported.
    pub fn strs(&self) -> PyResult<Vec<Option<&str>>> {
        self.bytes()
            .into_iter()
            .enumerate()
            .map(|(i, b)| {
                b.map(|b| skyfilter_core::utf8(b).ok_or_else(|| invalid_text(i)))
                    .transpose()
            })
            .collect()
    }

    /// Every row's bytes, null as `None`, without UTF-8 validation (for kernels defined on any bytes).
    pub fn bytes(&self) -> Vec<Option<&[u8]>> {
        match self {
            Texts::Utf8(a) => a.iter().collect(),
            Texts::LargeUtf8(a) => a.iter().collect(),
            Texts::Utf8View(a) => a.iter().collect(),
            Texts::Null(n) => vec![None; *n],
        }
    }
}

impl ByteRows for Texts {
    fn len(&self) -> usize {
        match self {
            Texts::Utf8(a) => a.len(),
            Texts::LargeUtf8(a) => a.len(),
            Texts::Utf8View(a) => a.len(),
            Texts::Null(n) => *n,
        }
    }

    fn row(&self, r: usize) -> Option<&[u8]> {
        match self {
            Texts::Utf8(a) => a.is_valid(r).then(|| a.value(r)),
            Texts::LargeUtf8(a) => a.is_valid(r).then(|| a.value(r)),
            Texts::Utf8View(a) => a.is_valid(r).then(|| a.value(r)),
            Texts::Null(_) => None,
        }
    }
}

/// Row bounds: row `r` owns texts `bounds[r]..bounds[r + 1]`; `None` means one text per row.
pub fn row_bounds(bounds: Option<&PyArray>, n_texts: usize) -> PyResult<Vec<usize>> {
    let Some(b) = bounds else {
        return Ok((0..=n_texts).collect());
    };
    match b.array().data_type() {
        DataType::Int64 if b.array().null_count() == 0 => b
            .array()
            .as_primitive::<Int64Type>()
            .values()
            .iter()
            .map(|&v| usize::try_from(v).map_err(|_| SkyfilterError::new_err("bounds must be non-negative")))
            .collect(),
        other => Err(SkyfilterError::new_err(format!(
            "bounds must be a non-null int64 array, got {other}"
        ))),
    }
}
