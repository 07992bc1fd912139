//! Bindings of `skyfilter_core::select`: row rules, per-group top fractions, text lengths and list means.

use std::borrow::Cow;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, UInt32Type, UInt8Type};
use arrow_array::{Array, BooleanArray, Float64Array, UInt32Array, UInt8Array};
use arrow_schema::DataType;
use pyo3::prelude::*;
use skyfilter_core::{select, ByteRows};

use crate::arrow_ffi::{to_pyarrow, PyArray};
use crate::error::{guarded, to_py, SkyfilterError};
use crate::texts::{row_bounds, Texts};

/// The values of a float64 array, nulls as NaN (borrowed when there are none).
fn floats<'a>(array: &'a PyArray, what: &str) -> PyResult<Cow<'a, [f64]>> {
    let a = array.array();
    if a.data_type() != &DataType::Float64 {
        return Err(SkyfilterError::new_err(format!(
            "{what} must be a float64 array, got {}",
            a.data_type()
        )));
    }
    let a = a.as_primitive::<Float64Type>();
    if a.null_count() == 0 {
        return Ok(Cow::Borrowed(a.values()));
    }
    Ok(Cow::Owned(a.iter().map(|v| v.unwrap_or(f64::NAN)).collect()))
}

fn optional_floats<'a>(array: Option<&'a PyArray>, what: &str) -> PyResult<Option<Cow<'a, [f64]>>> {
    array.map(|a| floats(a, what)).transpose()
}

fn bounds(pair: Option<(Option<f64>, Option<f64>)>) -> select::Bounds {
    let (min, max) = pair.unwrap_or((None, None));
    select::Bounds { min, max }
}

/// The code (index into `SELECT_REASONS`) of every row under the row-local rules, and the adjusted score
/// `score + offset` (None without a score). Columns are float64 (nulls count as missing); bounds are
/// `(min, max)` pairs, either side None. The length ratio is [`length_ratio_fails`], applied to the rows that
/// pass these rules.
#[pyfunction]
#[pyo3(signature = (
    rows, *, score = None, offset = None, chosen = None, rejected = None, rm_chosen = None, rm_rejected = None,
    chosen_bounds = None, rejected_bounds = None, margin_bounds = None, rm_agreement = false
))]
#[allow(clippy::too_many_arguments)]
pub fn row_reasons(
    py: Python<'_>,
    rows: usize,
    score: Option<PyArray>,
    offset: Option<PyArray>,
    chosen: Option<PyArray>,
    rejected: Option<PyArray>,
    rm_chosen: Option<PyArray>,
    rm_rejected: Option<PyArray>,
    chosen_bounds: Option<(Option<f64>, Option<f64>)>,
    rejected_bounds: Option<(Option<f64>, Option<f64>)>,
    margin_bounds: Option<(Option<f64>, Option<f64>)>,
    rm_agreement: bool,
) -> PyResult<(Py<PyAny>, Option<Py<PyAny>>)> {
    guarded(|| {
        let (score_v, offset_v) = (
            optional_floats(score.as_ref(), "score")?,
            optional_floats(offset.as_ref(), "offset")?,
        );
        let (chosen_v, rejected_v) = (
            optional_floats(chosen.as_ref(), "chosen")?,
            optional_floats(rejected.as_ref(), "rejected")?,
        );
        let (rm_c, rm_r) = (
            optional_floats(rm_chosen.as_ref(), "rm_chosen")?,
            optional_floats(rm_rejected.as_ref(), "rm_rejected")?,
        );
        let values = select::RowValues {
            score: score_v.as_deref(),
            offset: offset_v.as_deref(),
            chosen: chosen_v.as_deref(),
            rejected: rejected_v.as_deref(),
            rm_chosen: rm_c.as_deref(),
            rm_rejected: rm_r.as_deref(),
        };
        let rules = select::RowRules {
            chosen: bounds(chosen_bounds),
            rejected: bounds(rejected_bounds),
            margin: bounds(margin_bounds),
            rm_agreement,
        };
        let (reasons, adjusted) = py
            .detach(|| select::row_reasons(&values, &rules, rows))
            .map_err(to_py)?;
        let reasons = to_pyarrow(py, Arc::new(UInt8Array::from(reasons)))?;
        let adjusted = match score {
            Some(_) => Some(to_pyarrow(py, Arc::new(Float64Array::from(adjusted)))?),
            None => None,
        };
        Ok((reasons, adjusted))
    })
}

/// `reasons` with every kept row outside the best `ceil(f * n)` of its group (ranked by `scores`, high first,
/// ties to the earlier row) set to the `top_fraction` code. `groups` (uint32) index `fractions`.
#[pyfunction]
#[pyo3(signature = (reasons, scores, groups, fractions, *, threads = 0))]
pub fn top_fraction(
    py: Python<'_>,
    reasons: PyArray,
    scores: PyArray,
    groups: PyArray,
    fractions: Vec<f64>,
    threads: usize,
) -> PyResult<Py<PyAny>> {
    guarded(|| {
        let mut codes = match reasons.array().data_type() {
            DataType::UInt8 if reasons.array().null_count() == 0 => {
                reasons.array().as_primitive::<UInt8Type>().values().to_vec()
            }
            other => {
                return Err(SkyfilterError::new_err(format!(
                    "reasons must be a non-null uint8 array, got {other}"
                )))
            }
        };
        let scores = floats(&scores, "scores")?;
        let groups = match groups.array().data_type() {
            DataType::UInt32 if groups.array().null_count() == 0 => {
                groups.array().as_primitive::<UInt32Type>().values()
            }
            other => {
                return Err(SkyfilterError::new_err(format!(
                    "groups must be a non-null uint32 array, got {other}"
                )))
            }
        };
        py.detach(|| select::top_fraction(&mut codes, &scores, groups, &fractions, threads))
            .map_err(to_py)?;
        to_pyarrow(py, Arc::new(UInt8Array::from(codes)))
    })
}

/// For each row, whether the ratio of its chosen answer's characters to its rejected answer's falls outside
/// `(min, max)` (bool array). An answer is text `r` of its texts, or with bounds the texts
/// `bounds[r]:bounds[r + 1]` (its turns); characters are the bytes that start a UTF-8 sequence (but at least a
/// quarter of the bytes, which valid UTF-8 always has), so the texts need no validation. `only` (a boolean array, one per row) limits the rule to its true rows; the others are
/// false and not read.
#[pyfunction]
#[pyo3(signature = (
    chosen, rejected, *, chosen_bounds = None, rejected_bounds = None, only = None, min = None, max = None,
    threads = 0
))]
#[allow(clippy::too_many_arguments)]
pub fn length_ratio_fails(
    py: Python<'_>,
    chosen: PyArray,
    rejected: PyArray,
    chosen_bounds: Option<PyArray>,
    rejected_bounds: Option<PyArray>,
    only: Option<PyArray>,
    min: Option<f64>,
    max: Option<f64>,
    threads: usize,
) -> PyResult<Py<PyAny>> {
    guarded(|| {
        let (chosen, rejected) = (
            Texts::new(chosen.array(), "chosen")?,
            Texts::new(rejected.array(), "rejected")?,
        );
        let chosen_bounds = chosen_bounds.map(|b| row_bounds(Some(&b), chosen.len())).transpose()?;
        let rejected_bounds = rejected_bounds
            .map(|b| row_bounds(Some(&b), rejected.len()))
            .transpose()?;
        let only: Option<Vec<bool>> = match only {
            None => None,
            Some(o) if o.array().data_type() == &DataType::Boolean && o.array().null_count() == 0 => {
                Some(o.array().as_boolean().values().iter().collect())
            }
            Some(o) => {
                return Err(SkyfilterError::new_err(format!(
                    "only must be a non-null boolean array, got {}",
                    o.array().data_type()
                )))
            }
        };
        let fails = py
            .detach(|| {
                let chosen = select::Answers {
                    texts: &chosen,
                    bounds: chosen_bounds.as_deref(),
                };
                let rejected = select::Answers {
                    texts: &rejected,
                    bounds: rejected_bounds.as_deref(),
                };
                select::length_ratio_fails(
                    &chosen,
                    &rejected,
                    only.as_deref(),
                    select::Bounds { min, max },
                    threads,
                )
            })
            .map_err(to_py)?;
        to_pyarrow(py, Arc::new(BooleanArray::from(fails)))
    })
}

/// The mean of each row's values (`values[bounds[r]:bounds[r + 1]]`, float64, nulls as NaN): NaN for an empty
/// row or one with a missing value.
#[pyfunction]
pub fn segment_means(py: Python<'_>, values: PyArray, bounds: PyArray) -> PyResult<Py<PyAny>> {
    guarded(|| {
        let values = floats(&values, "values")?;
        let bounds = row_bounds(Some(&bounds), values.len())?;
        let means = select::segment_means(&values, &bounds).map_err(to_py)?;
        to_pyarrow(py, Arc::new(Float64Array::from(means)))
    })
}

/// Dense uint32 ids for the values of a string column across batches, in order of first appearance (null is a
/// value too); `names()` lists the values in id order.
#[pyclass(module = "skyfilter._core")]
#[derive(Default)]
pub struct GroupIds {
    inner: select::GroupIds,
}

#[pymethods]
impl GroupIds {
    #[new]
    fn new() -> Self {
        Self::default()
    }

    /// The id of every value of a string array (each distinct value checked to be UTF-8: InvalidTextError).
    #[pyo3(signature = (values, *, threads = 0))]
    fn encode(&mut self, py: Python<'_>, values: PyArray, threads: usize) -> PyResult<Py<PyAny>> {
        guarded(|| {
            let values = Texts::new(values.array(), "values")?;
            let inner = &mut self.inner;
            let ids = py.detach(|| inner.encode(&values, threads)).map_err(to_py)?;
            to_pyarrow(py, Arc::new(UInt32Array::from(ids)))
        })
    }

    /// The values in id order (None for null).
    fn names(&self) -> PyResult<Vec<Option<String>>> {
        guarded(|| {
            Ok(self
                .inner
                .names()
                .iter()
                .map(|n| n.as_ref().map(|b| String::from_utf8_lossy(b).into_owned()))
                .collect())
        })
    }
}
