//! Bindings of `skyfilter_core::contam`: the benchmark index and the matcher.

use std::sync::Arc;

use arrow_array::builder::{StringBuilder, UInt32Builder};
use arrow_array::cast::AsArray;
use arrow_array::types::UInt32Type;
use arrow_array::{Array, ArrayRef, BooleanArray, Float64Array, ListArray, RecordBatch, UInt32Array};
use arrow_buffer::{BooleanBufferBuilder, NullBuffer, OffsetBuffer};
use arrow_schema::{DataType, Field};
use pyo3::prelude::*;
use skyfilter_core::contam::{BenchIndex, Counts, Matches};
use skyfilter_core::text::Tokenizer;
use skyfilter_core::ByteRows;

use crate::arrow_ffi::{batch_to_pyarrow, to_pyarrow, PyArray};
use crate::error::{guarded, to_py, SkyfilterError};
use crate::texts::{row_bounds, Texts};
use crate::unicode::use_python_unicode;

/// The tokenizer named `name`, with the interpreter's character classes installed for it.
fn tokenizer_named(py: Python<'_>, name: &str) -> PyResult<Tokenizer> {
    let tokenizer = Tokenizer::from_name(name).ok_or_else(|| {
        SkyfilterError::new_err(format!(
            "unknown tokenizer {name:?}; expected \"words\" or \"whitespace\""
        ))
    })?;
    use_python_unicode(py)?;
    Ok(tokenizer)
}

/// The tokens of `text` under a tokenizer preset ("words" or "whitespace").
#[pyfunction]
#[pyo3(signature = (text, tokenizer = "words"))]
pub fn tokenize(py: Python<'_>, text: &str, tokenizer: &str) -> PyResult<Vec<String>> {
    guarded(|| Ok(tokenizer_named(py, tokenizer)?.tokenize(text)))
}

/// The distinct n-grams of one or more benchmarks' prompts, with the rows they occur in.
#[pyclass(frozen, module = "skyfilter._core")]
pub struct BenchmarkIndex {
    inner: BenchIndex,
}

fn u32_groups(groups: &PyArray) -> PyResult<UInt32Array> {
    match groups.array().data_type() {
        DataType::UInt32 => Ok(groups.array().as_primitive::<UInt32Type>().clone()),
        other => Err(SkyfilterError::new_err(format!(
            "groups must be a uint32 array, got {other}"
        ))),
    }
}

fn to_pyarrow_batch(py: Python<'_>, columns: Vec<(&str, ArrayRef)>) -> PyResult<Py<PyAny>> {
    let batch = RecordBatch::try_from_iter(columns).map_err(|e| SkyfilterError::new_err(e.to_string()))?;
    batch_to_pyarrow(py, batch)
}

#[pymethods]
impl BenchmarkIndex {
    /// Indexes `benchmarks` (a list of string arrays, one per benchmark; nulls are skipped).
    #[new]
    #[pyo3(signature = (benchmarks, *, tokenizer = "words", n = 7))]
    fn new(py: Python<'_>, benchmarks: Vec<PyArray>, tokenizer: &str, n: usize) -> PyResult<Self> {
        guarded(|| {
            let tokenizer = tokenizer_named(py, tokenizer)?;
            let holders = benchmarks
                .iter()
                .enumerate()
                .map(|(b, a)| Texts::new(a.array(), &format!("benchmark {b}")))
                .collect::<PyResult<Vec<_>>>()?;
            let texts = holders.iter().map(Texts::strs).collect::<PyResult<Vec<_>>>()?;
            let inner = py.detach(|| BenchIndex::build(tokenizer, n, &texts)).map_err(to_py)?;
            Ok(Self { inner })
        })
    }

    /// The n-gram size.
    #[getter]
    fn n(&self) -> usize {
        self.inner.n()
    }

    /// The tokenizer name.
    #[getter]
    fn tokenizer(&self) -> &'static str {
        self.inner.tokenizer().name()
    }

    /// Number of distinct benchmark n-grams (groups).
    #[getter]
    fn n_groups(&self) -> usize {
        self.inner.n_groups()
    }

    /// Rows of each benchmark, as indexed.
    #[getter]
    fn bench_rows(&self) -> Vec<u32> {
        self.inner.bench_rows().to_vec()
    }

    /// Matches training rows. Row `r` is `texts[bounds[r]:bounds[r + 1]]` (`bounds`: int64 offsets,
    /// `None` = one text per row). Returns a pyarrow RecordBatch, one row per training row, with
    /// `n_ngrams`, `n_matched`, `overlap`, `flagged`, `first_group` and `matched_groups`. `counts="matched"`
    /// counts the distinct n-grams of matched rows only (`n_ngrams` is null for the others that have some).
    #[pyo3(signature = (texts, bounds = None, *, threshold = 0.0, ignore = None, threads = 0, counts = "all"))]
    #[allow(clippy::too_many_arguments)] // the Python signature's keywords
    fn match_rows(
        &self,
        py: Python<'_>,
        texts: PyArray,
        bounds: Option<PyArray>,
        threshold: f64,
        ignore: Option<PyArray>,
        threads: usize,
        counts: &str,
    ) -> PyResult<Py<PyAny>> {
        guarded(|| {
            if !(0.0..=1.0).contains(&threshold) {
                return Err(SkyfilterError::new_err(format!(
                    "threshold must be within [0, 1], got {threshold}"
                )));
            }
            let counts = match counts {
                "all" => Counts::All,
                "matched" => Counts::Matched,
                other => {
                    return Err(SkyfilterError::new_err(format!(
                        "counts must be \"all\" or \"matched\", got {other:?}"
                    )))
                }
            };
            let holder = Texts::new(texts.array(), "texts")?;
            let bounds = row_bounds(bounds.as_ref(), holder.len())?;
            let ignore: Vec<bool> = match &ignore {
                None => Vec::new(),
                Some(mask) => match mask.array().as_boolean_opt() {
                    Some(m) => m.iter().map(|v| v.unwrap_or(false)).collect(),
                    None => return Err(SkyfilterError::new_err("ignore must be a boolean array")),
                },
            };
            let matches = py
                .detach(|| self.inner.match_rows(&holder, &bounds, &ignore, counts, threads))
                .map_err(to_py)?;
            to_pyarrow_batch(py, match_columns(matches, threshold)?)
        })
    }

    /// The text of each group (its tokens joined by spaces).
    fn ngram_texts(&self, py: Python<'_>, groups: PyArray) -> PyResult<Py<PyAny>> {
        guarded(|| {
            let groups = u32_groups(&groups)?;
            let mut out = StringBuilder::new();
            for g in &groups {
                out.append_option(g.and_then(|g| self.inner.ngram_text(g)));
            }
            to_pyarrow(py, Arc::new(out.finish()))
        })
    }

    /// Every (group, benchmark, row) occurrence of the given groups, as a pyarrow RecordBatch.
    fn postings(&self, py: Python<'_>, groups: PyArray) -> PyResult<Py<PyAny>> {
        guarded(|| {
            let groups = u32_groups(&groups)?;
            let (mut group, mut bench, mut row) = (UInt32Builder::new(), UInt32Builder::new(), UInt32Builder::new());
            for g in groups.iter().flatten() {
                for at in self.inner.postings(g).unwrap_or_default() {
                    group.append_value(g);
                    bench.append_value(at.bench);
                    row.append_value(at.row);
                }
            }
            to_pyarrow_batch(
                py,
                vec![
                    ("group", Arc::new(group.finish()) as ArrayRef),
                    ("bench", Arc::new(bench.finish())),
                    ("row", Arc::new(row.finish())),
                ],
            )
        })
    }
}

fn match_columns(matches: Matches, threshold: f64) -> PyResult<Vec<(&'static str, ArrayRef)>> {
    // One pass over the rows into every column's buffers, on the calling thread once the workers are done: 4.7 ms a
    // million rows, where five passes of Arrow's builders, one a column, took 11.8.
    let rows = matches.len();
    let (mut n_ngrams, mut counted) = (Vec::with_capacity(rows), BooleanBufferBuilder::new(rows));
    let (mut n_matched, mut overlap) = (Vec::with_capacity(rows), Vec::with_capacity(rows));
    let mut flagged = BooleanBufferBuilder::new(rows);
    let (mut first_group, mut any_match) = (Vec::with_capacity(rows), BooleanBufferBuilder::new(rows));
    let mut offsets = Vec::with_capacity(rows + 1);
    offsets.push(0i32);
    let mut end = 0usize;
    for m in matches.rows() {
        n_ngrams.push(m.n_ngrams.unwrap_or(0));
        counted.append(m.n_ngrams.is_some());
        n_matched.push(m.matched.len() as u32);
        overlap.push(m.overlap());
        flagged.append(m.is_flagged(threshold));
        first_group.push(m.matched.first().copied().unwrap_or(0));
        any_match.append(!m.matched.is_empty());
        end += m.matched.len();
        offsets.push(i32::try_from(end).map_err(|_| {
            SkyfilterError::new_err("more than 2^31 matched n-grams in one call: match fewer rows at a time")
        })?);
    }
    let n_ngrams = UInt32Array::new(n_ngrams.into(), Some(NullBuffer::new(counted.finish())));
    let n_matched = UInt32Array::new(n_matched.into(), None);
    let overlap = Float64Array::new(overlap.into(), None);
    let flagged = BooleanArray::new(flagged.finish(), None);
    let first_group = UInt32Array::new(first_group.into(), Some(NullBuffer::new(any_match.finish())));
    let groups = ListArray::new(
        Arc::new(Field::new_list_field(DataType::UInt32, true)),
        OffsetBuffer::new(offsets.into()),
        Arc::new(UInt32Array::from(matches.into_groups())),
        None,
    );
    Ok(vec![
        ("n_ngrams", Arc::new(n_ngrams) as ArrayRef),
        ("n_matched", Arc::new(n_matched)),
        ("overlap", Arc::new(overlap)),
        ("flagged", Arc::new(flagged)),
        ("first_group", Arc::new(first_group)),
        ("matched_groups", Arc::new(groups)),
    ])
}
