//! Rows of a string array as a string_view array that shares the input's text: only the 16-byte views are
//! written, so taking rows costs the same whatever the length of the texts.

use arrow_array::builder::make_view;
use arrow_array::{Array, GenericStringArray, OffsetSizeTrait, StringArray, StringViewArray};
use arrow_buffer::{Buffer, NullBuffer, OffsetBuffer, ScalarBuffer};

use crate::Error;

/// Views address their bytes with a u32 offset, so a data buffer is shared as overlapping blocks: block `k`
/// starts at `k * BLOCK_STEP` and is up to `2 * BLOCK_STEP` long, which holds every value that starts in its
/// step (Arrow values are shorter than 2^31 bytes).
pub const BLOCK_STEP: usize = 1 << 31;

fn nulls_at(nulls: Option<&NullBuffer>, rows: &[usize]) -> Option<NullBuffer> {
    let nulls = nulls.filter(|n| n.null_count() > 0)?;
    Some(rows.iter().map(|&r| nulls.is_valid(r)).collect())
}

/// Rows `rows` (each below `a.len()`) of a utf8 or large_utf8 array; `step` is [`BLOCK_STEP`] except in tests.
pub fn string_views<O: OffsetSizeTrait>(a: &GenericStringArray<O>, rows: &[usize], step: usize) -> StringViewArray {
    assert!(step > 0 && step <= BLOCK_STEP, "block step out of range");
    let data = a.values();
    let offsets = a.value_offsets();
    let blocks: Vec<Buffer> = (0..data.len().div_ceil(step))
        .map(|k| data.slice_with_length(k * step, (data.len() - k * step).min(2 * step)))
        .collect();
    let views: ScalarBuffer<u128> = rows
        .iter()
        .map(|&r| {
            if a.is_null(r) {
                return 0;
            }
            let (start, end) = (offsets[r].as_usize(), offsets[r + 1].as_usize());
            let block = start / step;
            assert!(end - block * step <= 2 * step, "a value longer than the block step");
            make_view(&data[start..end], block as u32, (start - block * step) as u32)
        })
        .collect();
    let nulls = nulls_at(a.nulls(), rows);
    // SAFETY: every view comes from `make_view` over a value of a valid utf8 array, at the block and offset
    // that hold exactly that value (checked above); the null buffer has one bit per view.
    unsafe { StringViewArray::new_unchecked(views, blocks, nulls) }
}

/// Rows `rows` (each below `a.len()`) of a string_view array, over the same buffers.
pub fn take_views(a: &StringViewArray, rows: &[usize]) -> StringViewArray {
    let views: ScalarBuffer<u128> = rows.iter().map(|&r| a.views()[r]).collect();
    let nulls = nulls_at(a.nulls(), rows);
    // SAFETY: the views are the input's own, over the same buffers.
    unsafe { StringViewArray::new_unchecked(views, a.data_buffers().to_vec(), nulls) }
}

/// Rows `rows` (each below `a.len()`) of a string_view array copied into a compact utf8 array: one copy of
/// the kept text, for the writer of a file. Fails if the rows hold 2 GiB of text or more.
pub fn copy_rows(a: &StringViewArray, rows: &[usize]) -> Result<StringArray, Error> {
    let total: usize = rows
        .iter()
        .map(|&r| if a.is_null(r) { 0 } else { a.value(r).len() })
        .sum();
    if i32::try_from(total).is_err() {
        return Err(Error::TextTooLarge(total));
    }
    let mut values = Vec::with_capacity(total);
    let mut offsets = Vec::with_capacity(rows.len() + 1);
    offsets.push(0i32);
    for &r in rows {
        if !a.is_null(r) {
            values.extend_from_slice(a.value(r).as_bytes());
        }
        offsets.push(values.len() as i32);
    }
    let nulls = nulls_at(a.nulls(), rows);
    // SAFETY: the offsets start at 0, never decrease and end at `values.len()` (which fits an i32, checked
    // above); each value is a whole value of a valid string_view array; the null buffer has one bit per row.
    Ok(unsafe {
        StringArray::new_unchecked(
            OffsetBuffer::new_unchecked(offsets.into()),
            Buffer::from_vec(values),
            nulls,
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{LargeStringArray, StringArray};

    fn values(a: &StringViewArray) -> Vec<Option<&str>> {
        a.iter().collect()
    }

    #[test]
    fn views_equal_the_rows_for_every_block_step() {
        // The longest value has 104 bytes; any step from there up is valid, and small ones use many blocks.
        let texts: Vec<Option<String>> = (0..200)
            .map(|i| (i % 7 != 3).then(|| "abcdefghijklmnopqrstuvwxyz".repeat(i % 5).chars().skip(i % 3).collect()))
            .collect();
        let a = StringArray::from(texts.clone());
        let large = LargeStringArray::from(texts.clone());
        let rows: Vec<usize> = (0..200).filter(|i| i % 3 != 1).chain([5, 5, 0]).collect();
        let expected: Vec<Option<&str>> = rows.iter().map(|&r| texts[r].as_deref()).collect();
        for step in [104, 128, 300, BLOCK_STEP] {
            let v = string_views(&a, &rows, step);
            v.to_data().validate_full().unwrap();
            assert_eq!(values(&v), expected, "step {step}");
            let v = string_views(&large, &rows, step);
            v.to_data().validate_full().unwrap();
            assert_eq!(values(&v), expected, "step {step}");
            let again = take_views(&v, &[1, 0]);
            again.to_data().validate_full().unwrap();
            assert_eq!(values(&again), vec![expected[1], expected[0]]);
        }
    }

    #[test]
    fn sliced_input_is_read_at_its_offset() {
        let a = StringArray::from(vec![
            Some("first value, long"),
            None,
            Some("third value, also long"),
            Some("x"),
        ]);
        let sliced = a.slice(1, 3);
        let v = string_views(&sliced, &[2, 1, 0], 24);
        v.to_data().validate_full().unwrap();
        assert_eq!(values(&v), vec![Some("x"), Some("third value, also long"), None]);
    }

    #[test]
    fn copied_rows_equal_the_rows_in_a_compact_utf8_array() {
        let texts: Vec<Option<String>> = (0..50)
            .map(|i| (i % 6 != 2).then(|| "view text beyond twelve bytes ".repeat(i % 4) + &i.to_string()))
            .collect();
        let v = StringViewArray::from(texts.clone());
        let rows = [0, 2, 3, 7, 7, 49, 1];
        let copied = copy_rows(&v, &rows).unwrap();
        copied.to_data().validate_full().unwrap();
        let expected: Vec<Option<&str>> = rows.iter().map(|&r| texts[r].as_deref()).collect();
        assert_eq!(copied.iter().collect::<Vec<_>>(), expected);
        assert_eq!(
            copied.values().len(),
            expected.iter().map(|t| t.map_or(0, str::len)).sum::<usize>()
        );
        assert_eq!(copy_rows(&v, &[]).unwrap().len(), 0);
    }
}
