//! Arrow arrays across the Python boundary, through the Arrow PyCapsule interface (the C data interface's
//! structs handed over in capsules: <https://arrow.apache.org/docs/format/CDataInterface/PyCapsuleInterface.html>).
//!
//! [`PyArray`] is an argument: any object with `__arrow_c_array__` (a pyarrow array, or another library's)
//! becomes an [`ArrayRef`] that shares the object's buffers. [`to_pyarrow`] and [`batch_to_pyarrow`] hand a
//! result to pyarrow, again without a copy. The bindings used no more than this of the pyo3-arrow crate; these
//! few functions of our own drop that crate and what it pulled in (arrow-cast, arrow-ord, chrono-tz, numpy and
//! ndarray: about 30% of the compile time of a clean release build).

use std::ffi::CStr;
use std::panic::{self, AssertUnwindSafe};
use std::ptr::NonNull;
use std::sync::Arc;

use arrow_array::ffi::{from_ffi, FFI_ArrowArray, FFI_ArrowSchema};
use arrow_array::{make_array, Array, ArrayRef, RecordBatch, StructArray};
use arrow_schema::Field;
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyCapsule;
use pyo3::{intern, Borrowed};

use crate::error::{panic_message, SkyfilterError};

/// The capsule names the PyCapsule interface gives an ArrowSchema and an ArrowArray.
const SCHEMA_CAPSULE: &CStr = c"arrow_schema";
const ARRAY_CAPSULE: &CStr = c"arrow_array";

/// An Arrow array passed in from Python: any object with `__arrow_c_array__`. The array owns the imported
/// buffers (they are released when the last reference to them is dropped), so it outlives the Python object.
#[derive(Debug)]
pub struct PyArray(ArrayRef);

impl PyArray {
    /// The imported array.
    pub fn array(&self) -> &ArrayRef {
        &self.0
    }
}

impl<'py> FromPyObject<'_, 'py> for PyArray {
    type Error = PyErr;

    fn extract(obj: Borrowed<'_, 'py, PyAny>) -> PyResult<Self> {
        let py = obj.py();
        let Some(export) = obj.getattr_opt(intern!(py, "__arrow_c_array__"))? else {
            return Err(not_an_array(&obj));
        };
        // No requested schema: the array comes as it is (the kernels check its type).
        let capsules = export.call0()?;
        let Ok((schema, array)) = capsules.extract::<(Bound<'py, PyCapsule>, Bound<'py, PyCapsule>)>() else {
            return Err(PyTypeError::new_err(format!(
                "{}.__arrow_c_array__() returned {}, not a tuple of two capsules",
                type_name(&obj),
                type_name(&capsules)
            )));
        };
        import(&schema, &array).map(Self)
    }
}

/// The one-line error for an argument that is not an Arrow array.
fn not_an_array(obj: &Bound<'_, PyAny>) -> PyErr {
    let hint = if obj.hasattr(intern!(obj.py(), "__arrow_c_stream__")).unwrap_or(false) {
        " (a chunked array or stream: combine its chunks into one array first)"
    } else {
        ""
    };
    PyTypeError::new_err(format!(
        "expected an Arrow array (an object with __arrow_c_array__), got {}{hint}",
        type_name(obj)
    ))
}

/// The qualified name of `obj`'s type (`pyarrow.lib.ChunkedArray`, `list`).
fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .fully_qualified_name()
        .map_or_else(|_| "an object of unknown type".to_owned(), |name| name.to_string())
}

/// The pointer in a capsule of the PyCapsule interface, checked to be named `name` and aligned for `T`.
fn capsule_pointer<T>(capsule: &Bound<'_, PyCapsule>, name: &CStr) -> PyResult<NonNull<T>> {
    let pointer = capsule
        .pointer_checked(Some(name))
        .map_err(|_| {
            PyTypeError::new_err(format!(
                "__arrow_c_array__() returned a capsule not named '{}' in its place",
                name.to_string_lossy()
            ))
        })?
        .cast::<T>();
    if !pointer.is_aligned() {
        return Err(PyTypeError::new_err(format!(
            "the '{}' capsule's pointer is not aligned",
            name.to_string_lossy()
        )));
    }
    Ok(pointer)
}

/// The array in the two capsules `__arrow_c_array__` returned. As the interface asks of a consumer, the
/// ArrowArray is moved out of its capsule (which keeps a released struct, so its destructor frees nothing) and the
/// ArrowSchema is only read (its capsule's destructor releases it).
fn import(schema: &Bound<'_, PyCapsule>, array: &Bound<'_, PyCapsule>) -> PyResult<ArrayRef> {
    let schema_pointer = capsule_pointer::<FFI_ArrowSchema>(schema, SCHEMA_CAPSULE)?;
    let array_pointer = capsule_pointer::<FFI_ArrowArray>(array, ARRAY_CAPSULE)?;
    // SAFETY: a capsule named "arrow_schema" holds an initialized ArrowSchema (the interface's contract; the
    // pointer is non-null and aligned, checked above). The struct lives until the capsule's destructor runs, and
    // `schema` holds a reference to the capsule for longer than this borrow; no Python code runs meanwhile, so
    // nothing else writes to the struct.
    let c_schema = unsafe { schema_pointer.as_ref() };
    if c_schema.release.is_none() {
        return Err(PyTypeError::new_err(
            "__arrow_c_array__() returned a released ArrowSchema",
        ));
    }
    // SAFETY: a capsule named "arrow_array" holds an initialized ArrowArray that the capsule owns (the
    // interface's contract; non-null and aligned, checked above), valid for reads and writes while `array`
    // holds the capsule. `from_raw` moves the struct out and leaves a released one (null `release`) in its place:
    // we own the array now, and the capsule's destructor will not release it a second time.
    let c_array = unsafe { FFI_ArrowArray::from_raw(array_pointer.as_ptr()) };
    if c_array.is_released() {
        return Err(PyTypeError::new_err(
            "__arrow_c_array__() returned a released ArrowArray (a capsule already consumed)",
        ));
    }
    // `from_ffi` asserts on some input that breaks the interface (a struct array with fewer children than its
    // schema has fields): that panic is the producer's error, not a bug here.
    let imported = panic::catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: `from_ffi` trusts that `c_array` is laid out as `c_schema` describes and that its buffers are
        // as long as its length, offset and value offsets say, which a producer of the C data interface
        // promises. There is nothing to check that against: the interface passes no buffer sizes (`from_ffi`
        // derives them, which is also why `ArrayData::validate` is not run here: it refuses the data buffer of
        // length 0 that `from_ffi` gives an empty utf8 slice whose first offset is not 0).
        unsafe { from_ffi(c_array, c_schema) }
    }));
    let data = imported
        .map_err(|payload| panic_message(payload.as_ref()))
        .and_then(|data| data.map_err(|e| e.to_string()))
        .map_err(|e| SkyfilterError::new_err(format!("cannot import the Arrow array: {e}")))?;
    Ok(make_array(data))
}

/// An array and its field, handed to pyarrow through `__arrow_c_array__` (pyarrow calls it from
/// `pyarrow.array` and `pyarrow.record_batch`).
#[pyclass(frozen, module = "skyfilter._core", name = "_ArrowExport")]
struct ArrowExport {
    array: ArrayRef,
    field: Field,
}

#[pymethods]
impl ArrowExport {
    /// The array as a pair of new capsules ("arrow_schema", "arrow_array") that share its buffers. Each
    /// capsule owns its struct: its destructor releases the struct unless the consumer moved it out (a moved
    /// struct is left released, and releasing does nothing then).
    #[pyo3(signature = (requested_schema = None))]
    fn __arrow_c_array__<'py>(
        &self,
        py: Python<'py>,
        requested_schema: Option<Bound<'py, PyAny>>,
    ) -> PyResult<(Bound<'py, PyCapsule>, Bound<'py, PyCapsule>)> {
        // The interface lets a producer that does not cast ignore the requested schema; the consumer checks.
        drop(requested_schema);
        let c_schema = FFI_ArrowSchema::try_from(&self.field)
            .map_err(|e| SkyfilterError::new_err(format!("cannot export the Arrow array: {e}")))?;
        let c_array = FFI_ArrowArray::new(&self.array.to_data());
        Ok((
            PyCapsule::new_with_value(py, c_schema, SCHEMA_CAPSULE)?,
            PyCapsule::new_with_value(py, c_array, ARRAY_CAPSULE)?,
        ))
    }
}

/// `array` as a pyarrow array (through the C data interface, no copy).
pub fn to_pyarrow(py: Python<'_>, array: ArrayRef) -> PyResult<Py<PyAny>> {
    static PYARROW_ARRAY: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    let field = Field::new("", array.data_type().clone(), true);
    let export = Bound::new(py, ArrowExport { array, field })?;
    Ok(PYARROW_ARRAY.import(py, "pyarrow", "array")?.call1((export,))?.unbind())
}

/// `batch` as a pyarrow record batch (no copy), with its schema's metadata and its fields' nullability: it
/// goes as a struct array whose field carries the schema, as the C data interface sends a record batch.
pub fn batch_to_pyarrow(py: Python<'_>, batch: RecordBatch) -> PyResult<Py<PyAny>> {
    static PYARROW_RECORD_BATCH: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    let schema = batch.schema();
    let field = Field::new_struct("", schema.fields().clone(), false).with_metadata(schema.metadata().clone());
    let array: ArrayRef = Arc::new(StructArray::from(batch));
    let export = Bound::new(py, ArrowExport { array, field })?;
    Ok(PYARROW_RECORD_BATCH
        .import(py, "pyarrow", "record_batch")?
        .call1((export,))?
        .unbind())
}
