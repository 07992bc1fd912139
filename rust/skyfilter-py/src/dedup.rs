//! Bindings of `skyfilter_core::dedup`: row keys, MinHash signatures and near-duplicate clustering.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{ArrowPrimitiveType, UInt32Type, UInt64Type};
use arrow_array::{
    Array, FixedSizeBinaryArray, FixedSizeListArray, LargeListArray, PrimitiveArray, UInt32Array, UInt64Array,
};
use arrow_buffer::OffsetBuffer;
use arrow_schema::{DataType, Field};
use pyo3::prelude::*;
use skyfilter_core::dedup;
use skyfilter_core::shingle_sets::ShingleSets;

use crate::arrow_ffi::{to_pyarrow, PyArray};
use crate::error::{guarded, to_py, SkyfilterError};
use crate::texts::{row_bounds, Texts};
use crate::unicode::use_python_unicode;

/// A 16-byte key per row over its texts (row `r` = `texts[bounds[r]:bounds[r + 1]]`), each with whitespace
/// trimmed and collapsed (and lower-cased if asked, each character as this interpreter's `str.lower` does):
/// equal keys mean equal normalised texts.
#[pyfunction]
#[pyo3(signature = (texts, bounds = None, *, lowercase = false, threads = 0))]
pub fn row_keys(
    py: Python<'_>,
    texts: PyArray,
    bounds: Option<PyArray>,
    lowercase: bool,
    threads: usize,
) -> PyResult<Py<PyAny>> {
    if lowercase {
        use_python_unicode(py)?;
    }
    let holder = Texts::new(texts.array(), "texts")?;
    let strs = holder.strs()?;
    let bounds = row_bounds(bounds.as_ref(), strs.len())?;
    let keys = guarded(|| {
        py.detach(|| dedup::row_keys(&strs, &bounds, lowercase, threads))
            .map_err(to_py)
    })?;
    // An empty iterator gives no width to `try_from_iter` (an error): no rows is an empty array of the width.
    let array = if keys.is_empty() {
        FixedSizeBinaryArray::new_null(16, 0)
    } else {
        FixedSizeBinaryArray::try_from_iter(keys.iter().map(|k| k.to_be_bytes()))
            .map_err(|e| SkyfilterError::new_err(e.to_string()))?
    };
    to_pyarrow(py, Arc::new(array))
}

/// MinHash over word shingles (the `words` tokens), `num_perm` permutations from a fixed seed.
#[pyclass(frozen, module = "skyfilter._core")]
pub struct MinHasher {
    inner: dedup::MinHasher,
}

#[pymethods]
impl MinHasher {
    #[new]
    #[pyo3(signature = (num_perm = 128, shingle = 5, seed = 0))]
    fn new(py: Python<'_>, num_perm: usize, shingle: usize, seed: u64) -> PyResult<Self> {
        use_python_unicode(py)?;
        Ok(Self {
            inner: guarded(|| dedup::MinHasher::new(num_perm, shingle, seed).map_err(to_py))?,
        })
    }

    /// Number of permutations.
    #[getter]
    fn num_perm(&self) -> usize {
        self.inner.num_perm()
    }

    /// Signatures of rows as a `fixed_size_list<uint32>[num_perm]` array; rows without tokens are all 2^32 - 1.
    #[pyo3(signature = (texts, bounds = None, *, threads = 0))]
    fn signatures(
        &self,
        py: Python<'_>,
        texts: PyArray,
        bounds: Option<PyArray>,
        threads: usize,
    ) -> PyResult<Py<PyAny>> {
        let holder = Texts::new(texts.array(), "texts")?;
        let rows = holder.bytes(); // checked to be UTF-8 by the workers
        let bounds = row_bounds(bounds.as_ref(), rows.len())?;
        let values = guarded(|| {
            py.detach(|| self.inner.signatures(&rows[..], &bounds, threads))
                .map_err(to_py)
        })?;
        self.signature_array(py, values)
    }

    /// `(signatures, shingle_sets)`: the signatures as `signatures` gives them, and each row's 64-bit shingle
    /// hashes in text order (repeats kept) as a `large_list<uint64>` array, for `NearDedup(verify="exact")`.
    #[pyo3(signature = (texts, bounds = None, *, threads = 0))]
    fn signatures_and_shingles(
        &self,
        py: Python<'_>,
        texts: PyArray,
        bounds: Option<PyArray>,
        threads: usize,
    ) -> PyResult<(Py<PyAny>, Py<PyAny>)> {
        let holder = Texts::new(texts.array(), "texts")?;
        let rows = holder.bytes(); // checked to be UTF-8 by the workers
        let bounds = row_bounds(bounds.as_ref(), rows.len())?;
        let (values, sets) = guarded(|| {
            py.detach(|| self.inner.signatures_and_shingles(&rows[..], &bounds, threads))
                .map_err(to_py)
        })?;
        let (offsets, hashes) = sets.into_parts();
        let offsets = OffsetBuffer::new(offsets.into_iter().map(|o| o as i64).collect::<Vec<_>>().into());
        let field = Arc::new(Field::new("item", DataType::UInt64, false));
        let sets = LargeListArray::try_new(field, offsets, Arc::new(UInt64Array::from(hashes)), None)
            .map_err(|e| SkyfilterError::new_err(e.to_string()))?;
        Ok((self.signature_array(py, values)?, to_pyarrow(py, Arc::new(sets))?))
    }
}

impl MinHasher {
    /// Signature values as a `fixed_size_list<uint32>[num_perm]` array.
    fn signature_array(&self, py: Python<'_>, values: Vec<u32>) -> PyResult<Py<PyAny>> {
        let field = Arc::new(Field::new("item", DataType::UInt32, false));
        let list = FixedSizeListArray::try_new(
            field,
            self.inner.num_perm() as i32,
            Arc::new(UInt32Array::from(values)),
            None,
        )
        .map_err(|e| SkyfilterError::new_err(e.to_string()))?;
        to_pyarrow(py, Arc::new(list))
    }
}

/// Near-duplicate clusters over rows added in input order: the connected components of the LSH candidate pairs
/// whose Jaccard similarity reaches the threshold, estimated from the signatures (`verify="estimate"`) or exact
/// from the rows' shingle sets (`verify="exact"`); a cluster is named by its first row.
#[pyclass(module = "skyfilter._core")]
pub struct NearDedup {
    inner: dedup::NearDedup,
}

#[pymethods]
impl NearDedup {
    #[new]
    #[pyo3(signature = (num_perm, bands, rows_per_band, threshold, verify = "estimate"))]
    fn new(num_perm: usize, bands: usize, rows_per_band: usize, threshold: f64, verify: &str) -> PyResult<Self> {
        let Some(verify) = dedup::Verify::from_name(verify) else {
            return Err(SkyfilterError::new_err(format!(
                "verify must be 'estimate' or 'exact', got {verify:?}"
            )));
        };
        Ok(Self {
            inner: guarded(|| dedup::NearDedup::new(num_perm, bands, rows_per_band, threshold, verify).map_err(to_py))?,
        })
    }

    fn __len__(&self) -> usize {
        self.inner.len()
    }

    /// Adds the next rows' signatures (from `MinHasher.signatures`: `fixed_size_list<uint32>[num_perm]`, no nulls)
    /// and, verifying exactly, their shingle sets (from `MinHasher.signatures_and_shingles`).
    #[pyo3(signature = (signatures, shingle_sets = None))]
    fn add(&mut self, py: Python<'_>, signatures: PyArray, shingle_sets: Option<PyArray>) -> PyResult<()> {
        let values = signature_values(&signatures, self.inner.num_perm())?;
        let sets = shingle_sets.as_ref().map(shingle_set_values).transpose()?;
        let inner = &mut self.inner;
        guarded(|| py.detach(|| inner.add(values.values(), sets)).map_err(to_py))
    }

    /// The LSH band keys of the rows with tokens among `signatures` (not added): `(keys, rows)`, a uint64 key and
    /// the uint32 row (index in `signatures`) for each band of each such row, the keys `clusters` buckets by.
    fn band_keys(&self, py: Python<'_>, signatures: PyArray) -> PyResult<(Py<PyAny>, Py<PyAny>)> {
        guarded(|| {
            let values = signature_values(&signatures, self.inner.num_perm())?;
            let inner = &self.inner;
            let keys = py
                .detach(|| inner.signature_band_keys(values.values()))
                .map_err(to_py)?;
            let (keys, rows): (Vec<u64>, Vec<u32>) = keys.into_iter().unzip();
            Ok((
                to_pyarrow(py, Arc::new(UInt64Array::from(keys)))?,
                to_pyarrow(py, Arc::new(UInt32Array::from(rows)))?,
            ))
        })
    }

    /// The cluster of every row added, joining only candidates that share a bucket among the entries
    /// (`keys[i]`, `rows[i]`) (uint64 band keys from `band_keys`, uint32 rows added): each bucket whole, as
    /// uint32 row indices of the clusters' first rows. The union of the clusters over disjoint sets of buckets
    /// is `clusters()` over all of them.
    fn bucket_clusters(&self, py: Python<'_>, keys: PyArray, rows: PyArray) -> PyResult<Py<PyAny>> {
        guarded(|| {
            let keys = non_null::<UInt64Type>(&keys, "keys", &DataType::UInt64)?;
            let rows = non_null::<UInt32Type>(&rows, "rows", &DataType::UInt32)?;
            if keys.len() != rows.len() {
                return Err(SkyfilterError::new_err(format!(
                    "{} keys for {} rows: give one key per row",
                    keys.len(),
                    rows.len()
                )));
            }
            let inner = &self.inner;
            let entries: Vec<(u64, u32)> = keys
                .values()
                .iter()
                .copied()
                .zip(rows.values().iter().copied())
                .collect();
            let clusters = py.detach(|| inner.bucket_clusters(&entries)).map_err(to_py)?;
            to_pyarrow(py, Arc::new(UInt32Array::from(clusters)))
        })
    }

    /// The cluster of every row added so far (the 0-based index of the cluster's first row), as uint32.
    fn clusters(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let inner = &self.inner;
        let clusters = guarded(|| Ok(py.detach(|| inner.clusters())))?;
        to_pyarrow(py, Arc::new(UInt32Array::from(clusters)))
    }
}

/// The connected components of the graph with the edges (`left[i]`, `right[i]`) (non-null uint64 nodes):
/// `(nodes, roots)`, each node once in ascending order and the smallest node of its component.
#[pyfunction]
pub fn components(py: Python<'_>, left: PyArray, right: PyArray) -> PyResult<(Py<PyAny>, Py<PyAny>)> {
    guarded(|| {
        let left = non_null::<UInt64Type>(&left, "left", &DataType::UInt64)?;
        let right = non_null::<UInt64Type>(&right, "right", &DataType::UInt64)?;
        let (nodes, roots) = py
            .detach(|| dedup::components(left.values(), right.values()))
            .map_err(to_py)?;
        Ok((
            to_pyarrow(py, Arc::new(UInt64Array::from(nodes)))?,
            to_pyarrow(py, Arc::new(UInt64Array::from(roots)))?,
        ))
    })
}

/// The values of `fixed_size_list<uint32>[num_perm]` signatures without nulls, one signature after the other.
fn signature_values(signatures: &PyArray, num_perm: usize) -> PyResult<PrimitiveArray<UInt32Type>> {
    let list = match signatures.array().data_type() {
        DataType::FixedSizeList(f, width) if f.data_type() == &DataType::UInt32 && *width as usize == num_perm => {
            signatures.array().as_fixed_size_list()
        }
        other => {
            return Err(SkyfilterError::new_err(format!(
                "signatures must be fixed_size_list<uint32>[{num_perm}] (num_perm), got {other}"
            )))
        }
    };
    let (start, len) = (list.offset() * num_perm, list.len() * num_perm);
    let values = list.values().as_primitive::<UInt32Type>().slice(start, len);
    if list.null_count() > 0 || values.null_count() > 0 {
        return Err(SkyfilterError::new_err("signatures must not contain nulls"));
    }
    Ok(values)
}

/// Shingle sets given as a `large_list<uint64>` array without nulls (each row's hashes in any order, repeats
/// allowed), copied.
fn shingle_set_values(sets: &PyArray) -> PyResult<ShingleSets> {
    let DataType::LargeList(item) = sets.array().data_type() else {
        return Err(SkyfilterError::new_err(format!(
            "shingle sets must be large_list<uint64>, got {}",
            sets.array().data_type()
        )));
    };
    if item.data_type() != &DataType::UInt64 {
        return Err(SkyfilterError::new_err(format!(
            "shingle sets must be large_list<uint64>, got large_list<{}>",
            item.data_type()
        )));
    }
    let list = sets.array().as_list::<i64>();
    let values = list.values().as_primitive::<UInt64Type>();
    if list.null_count() > 0 || values.null_count() > 0 {
        return Err(SkyfilterError::new_err("shingle sets must not contain nulls"));
    }
    let offsets = list.value_offsets();
    let (start, end) = (offsets[0] as usize, offsets[offsets.len() - 1] as usize);
    let rebased = offsets.iter().map(|&o| o as usize - start).collect();
    ShingleSets::new(rebased, values.values()[start..end].to_vec()).map_err(to_py)
}

/// `array` as a primitive array of type `expected` without nulls, or an error naming it.
fn non_null<T: ArrowPrimitiveType>(array: &PyArray, name: &str, expected: &DataType) -> PyResult<PrimitiveArray<T>> {
    let a = array.array();
    if a.data_type() != expected || a.null_count() > 0 {
        return Err(SkyfilterError::new_err(format!(
            "{name} must be a non-null {expected} array, got {}{}",
            a.data_type(),
            if a.null_count() > 0 { " with nulls" } else { "" }
        )));
    }
    Ok(a.as_primitive::<T>().clone())
}
