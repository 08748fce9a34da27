//! Tests of the offset to line and column conversion.

use super::line_col;

#[test]
fn positions() {
    let t = "ab\ncdé\nf";
    assert_eq!(line_col(t, 0), (1, 1));
    assert_eq!(line_col(t, 3), (2, 1));
    assert_eq!(line_col(t, 7), (2, 4)); // after the two-byte é
    assert_eq!(line_col(t, 6), (2, 3)); // inside é: rounds down
    assert_eq!(line_col(t, 100), (3, 2));
    assert_eq!(line_col("", 5), (1, 1));
}
