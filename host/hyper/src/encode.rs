//! The HyperBinary COPY format, with every value checked against its column.
//!
//! Layout (measured against hyperd 9.1 and read back with Tableau's Python
//! Hyper API): a stream starts with `HPRCPY` and 13 zero bytes; rows follow
//! with no framing. A *nullable* column is preceded by one flag byte (1 for
//! NULL, then nothing else; 0 for a value); a NOT NULL column has no flag.
//! All numbers are little-endian:
//!
//! | column type | bytes |
//! |---|---|
//! | `TEXT` | `u32` length, UTF-8 bytes |
//! | `BIGINT` | `i64` |
//! | `DOUBLE PRECISION` | `f64` |
//! | `NUMERIC(p,s)`, p ≤ 18 | unscaled `i64` at scale `s` |
//! | `NUMERIC(p,s)`, p > 18 | unscaled `i128` at scale `s` |
//! | `BOOLEAN` | one byte, 0 or 1 |
//! | `DATE` | `u32` Julian day (days since 1970-01-01 + 2,440,588) |
//! | `TIMESTAMP WITH TIME ZONE` | `u64` µs since the Julian epoch (µs since 1970 UTC + 2,440,588 days) |
//!
//! hyperd trusts these bytes: a value of the wrong width or scale would be
//! stored as garbage, not refused. So [`RowEncoder::encode_row`] checks each
//! value against its column first and turns anything that does not fit
//! exactly into a [`Reject`] naming the column; the buffer is left as it was.
//! Each column takes values of its own kind; the only conversions are the
//! exact ones: an integer into a NUMERIC (if it fits the precision) or into
//! a DOUBLE PRECISION (if within ±2^53). NULL goes only into nullable
//! columns; a decimal is rescaled to the column's scale only when no
//! non-zero digit is lost ([`Decimal::fit`]).

use mlc_common::decimal::pow10;
use mlc_common::{Column, ColumnType, Decimal, Reject, Row, Schema, Value};

/// The 19 bytes every HyperBinary COPY stream starts with.
pub const HEADER: [u8; 19] = *b"HPRCPY\0\0\0\0\0\0\0\0\0\0\0\0\0";

/// Days from the Julian epoch (4714-11-24 BC) to 1970-01-01.
pub const UNIX_EPOCH_JULIAN_DAY: i64 = 2_440_588;
/// Microseconds in a day.
const MICROS_PER_DAY: i64 = 86_400_000_000;
/// Integers a `f64` holds exactly (±2^53).
const F64_EXACT_INT: i64 = 1 << 53;

/// Largest precision stored as an `i64`; above it the file needs version 4
/// and the value is an `i128`.
pub const MAX_I64_PRECISION: u8 = 18;

/// One column as the encoder sees it.
#[derive(Clone, Debug)]
struct Slot {
    name: String,
    ty: ColumnType,
    nullable: bool,
}

/// Encodes rows of one schema into HyperBinary, checking each value.
#[derive(Clone, Debug)]
pub struct RowEncoder {
    slots: Vec<Slot>,
}

impl RowEncoder {
    /// An encoder for rows of `schema`, in column order.
    pub fn new(schema: &Schema) -> Self {
        Self {
            slots: schema
                .columns
                .iter()
                .map(|c: &Column| Slot {
                    name: c.name.clone(),
                    ty: c.ty,
                    nullable: c.nullable,
                })
                .collect(),
        }
    }

    /// Number of columns.
    pub fn width(&self) -> usize {
        self.slots.len()
    }

    /// Appends `row` to `buf`, or leaves `buf` unchanged and returns why the
    /// row cannot be stored (the reject's `index` is `row.source`, its
    /// `field` the column at fault).
    pub fn encode_row(&self, row: &Row, buf: &mut Vec<u8>) -> Result<(), Reject> {
        if row.values.len() != self.slots.len() {
            return Err(Reject {
                index: row.source,
                field: None,
                reason: format!(
                    "row has {} values but the table has {} columns",
                    row.values.len(),
                    self.slots.len()
                ),
            });
        }
        let start = buf.len();
        for (slot, value) in self.slots.iter().zip(&row.values) {
            if let Err(reason) = encode_value(slot, value, buf) {
                buf.truncate(start);
                return Err(Reject {
                    index: row.source,
                    field: Some(slot.name.clone()),
                    reason,
                });
            }
        }
        Ok(())
    }
}

/// Appends one value (with its null flag when the column is nullable).
fn encode_value(slot: &Slot, value: &Value, buf: &mut Vec<u8>) -> Result<(), String> {
    if matches!(value, Value::Null) {
        if !slot.nullable {
            return Err(format!("NULL in NOT NULL column {}", slot.ty.sql()));
        }
        buf.push(1);
        return Ok(());
    }
    if slot.nullable {
        buf.push(0);
    }
    match (slot.ty, value) {
        (ColumnType::Text, Value::Text(text)) => {
            let len = u32::try_from(text.len())
                .map_err(|_| format!("text of {} bytes is too long", text.len()))?;
            buf.extend_from_slice(&len.to_le_bytes());
            buf.extend_from_slice(text.as_bytes());
        }
        (ColumnType::Integer, Value::Integer(i)) => buf.extend_from_slice(&i.to_le_bytes()),
        (ColumnType::Double, Value::Double(f)) => buf.extend_from_slice(&f.to_le_bytes()),
        (ColumnType::Double, Value::Integer(i)) => {
            if !(-F64_EXACT_INT..=F64_EXACT_INT).contains(i) {
                return Err(format!(
                    "integer {i} cannot be stored exactly in DOUBLE PRECISION"
                ));
            }
            buf.extend_from_slice(&(*i as f64).to_le_bytes());
        }
        (ColumnType::Decimal { precision, scale }, Value::Decimal(d)) => {
            encode_decimal(*d, precision, scale, buf)?;
        }
        (ColumnType::Decimal { precision, scale }, Value::Integer(i)) => {
            encode_decimal(Decimal::new(i128::from(*i), 0), precision, scale, buf)?;
        }
        (ColumnType::Boolean, Value::Boolean(b)) => buf.push(u8::from(*b)),
        (ColumnType::Date, Value::Date(days)) => {
            let julian = i64::from(*days) + UNIX_EPOCH_JULIAN_DAY;
            let julian = u32::try_from(julian)
                .map_err(|_| format!("date {days} days from 1970-01-01 is out of range"))?;
            buf.extend_from_slice(&julian.to_le_bytes());
        }
        (ColumnType::Timestamp, Value::Timestamp(micros)) => {
            let shifted = micros
                .checked_add(UNIX_EPOCH_JULIAN_DAY * MICROS_PER_DAY)
                .and_then(|v| u64::try_from(v).ok())
                .ok_or_else(|| format!("timestamp {micros} µs from 1970 is out of range"))?;
            buf.extend_from_slice(&shifted.to_le_bytes());
        }
        (ty, other) => {
            return Err(format!("{} value for {} column", other.kind(), ty.sql()));
        }
    }
    Ok(())
}

/// The unscaled value at the column's scale, exactly, as `i64` or `i128`.
///
/// The common case (rescale succeeds, digits fit) is checked here without
/// building any text; only a refused value goes through [`Decimal::fit`],
/// whose error explains why.
fn encode_decimal(d: Decimal, precision: u8, scale: u8, buf: &mut Vec<u8>) -> Result<(), String> {
    let limit = pow10(precision).map(i128::unsigned_abs);
    let fitted = match (d.rescale(scale), limit) {
        (Ok(r), Some(limit)) if r.unscaled.unsigned_abs() < limit => r,
        _ => {
            return Err(match d.fit(precision, scale) {
                Err(e) => e.to_string(),
                Ok(_) => format!("{d} does not fit NUMERIC({precision},{scale})"),
            });
        }
    };
    if precision <= MAX_I64_PRECISION {
        let unscaled = i64::try_from(fitted.unscaled)
            .map_err(|_| format!("{d} does not fit NUMERIC({precision},{scale})"))?;
        buf.extend_from_slice(&unscaled.to_le_bytes());
    } else {
        buf.extend_from_slice(&fitted.unscaled.to_le_bytes());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use mlc_common::time::{parse_date, parse_timestamp};

    fn col(name: &str, ty: ColumnType, nullable: bool) -> Column {
        Column {
            name: name.into(),
            ty,
            nullable,
            key: false,
        }
    }

    fn encode(ty: ColumnType, nullable: bool, value: Value) -> Result<Vec<u8>, Reject> {
        let enc = RowEncoder::new(&Schema {
            columns: vec![col("c", ty, nullable)],
        });
        let mut buf = Vec::new();
        enc.encode_row(
            &Row {
                source: 7,
                values: vec![value],
            },
            &mut buf,
        )
        .map(|()| buf)
    }

    fn dec(text: &str) -> Value {
        Value::Decimal(Decimal::parse(text).unwrap())
    }

    const N18_2: ColumnType = ColumnType::Decimal {
        precision: 18,
        scale: 2,
    };
    const N38_9: ColumnType = ColumnType::Decimal {
        precision: 38,
        scale: 9,
    };

    #[test]
    fn header_is_hprcpy_and_13_zeros() {
        assert_eq!(&HEADER[..6], b"HPRCPY");
        assert_eq!(HEADER.len(), 19);
        assert!(HEADER[6..].iter().all(|b| *b == 0));
    }

    #[test]
    fn exact_bytes_per_type() {
        let t = ColumnType::Text;
        assert_eq!(
            encode(t, false, Value::Text("hé".into())).unwrap(),
            [3, 0, 0, 0, b'h', 0xc3, 0xa9]
        );
        assert_eq!(
            encode(t, false, Value::Text(String::new())).unwrap(),
            [0, 0, 0, 0]
        );
        assert_eq!(
            encode(ColumnType::Integer, false, Value::Integer(-2)).unwrap(),
            (-2i64).to_le_bytes()
        );
        assert_eq!(
            encode(ColumnType::Integer, false, Value::Integer(i64::MIN)).unwrap(),
            [0, 0, 0, 0, 0, 0, 0, 0x80]
        );
        assert_eq!(
            encode(ColumnType::Double, false, Value::Double(1.5)).unwrap(),
            [0, 0, 0, 0, 0, 0, 0xf8, 0x3f]
        );
        assert_eq!(
            encode(ColumnType::Boolean, false, Value::Boolean(true)).unwrap(),
            [1]
        );
        assert_eq!(
            encode(ColumnType::Boolean, false, Value::Boolean(false)).unwrap(),
            [0]
        );
        // 1970-01-01 is Julian day 2,440,588 = 0x00253D8C.
        assert_eq!(
            encode(ColumnType::Date, false, Value::Date(0)).unwrap(),
            [0x8c, 0x3d, 0x25, 0x00]
        );
        let d = parse_date("0001-01-01").unwrap();
        assert_eq!(
            encode(ColumnType::Date, false, Value::Date(d)).unwrap(),
            1_721_426u32.to_le_bytes()
        );
        let ts = parse_timestamp("1970-01-01T00:00:00.000001Z").unwrap();
        assert_eq!(
            encode(ColumnType::Timestamp, false, Value::Timestamp(ts)).unwrap(),
            (2_440_588u64 * 86_400_000_000 + 1).to_le_bytes()
        );
    }

    #[test]
    fn nullable_columns_carry_a_flag_byte() {
        assert_eq!(encode(ColumnType::Text, true, Value::Null).unwrap(), [1]);
        assert_eq!(encode(N38_9, true, Value::Null).unwrap(), [1]);
        assert_eq!(
            encode(ColumnType::Integer, true, Value::Integer(1)).unwrap(),
            [0, 1, 0, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(
            encode(ColumnType::Boolean, true, Value::Boolean(true)).unwrap(),
            [0, 1]
        );
    }

    #[test]
    fn decimals_are_rescaled_exactly() {
        // 12.3 at scale 2 is 1230; written as i64 for precision 18.
        assert_eq!(
            encode(N18_2, false, dec("12.3")).unwrap(),
            1230i64.to_le_bytes()
        );
        assert_eq!(
            encode(N18_2, false, dec("-0.50")).unwrap(),
            (-50i64).to_le_bytes()
        );
        assert_eq!(
            encode(N18_2, false, dec("1.25E3")).unwrap(),
            125_000i64.to_le_bytes()
        );
        assert_eq!(
            encode(N18_2, false, Value::Integer(7)).unwrap(),
            700i64.to_le_bytes()
        );
        // Trailing zeros beyond the scale are dropped without loss.
        assert_eq!(
            encode(N18_2, false, dec("4.5000")).unwrap(),
            450i64.to_le_bytes()
        );
        // precision > 18: i128.
        assert_eq!(
            encode(N38_9, false, dec("12345678901234567890.123456789")).unwrap(),
            12_345_678_901_234_567_890_123_456_789i128.to_le_bytes()
        );
        assert_eq!(
            encode(N38_9, true, dec("-1")).unwrap(),
            [&[0u8][..], &(-1_000_000_000i128).to_le_bytes()].concat()
        );
    }

    fn reject(ty: ColumnType, nullable: bool, value: Value) -> Reject {
        encode(ty, nullable, value).unwrap_err()
    }

    #[test]
    fn wrong_values_are_rejects_naming_the_column() {
        let cases = [
            (
                ColumnType::Integer,
                false,
                Value::Text("12".into()),
                "text value for BIGINT column",
            ),
            (
                ColumnType::Text,
                false,
                Value::Integer(1),
                "integer value for TEXT column",
            ),
            (
                ColumnType::Integer,
                false,
                Value::Double(1.0),
                "double value for BIGINT column",
            ),
            (
                ColumnType::Integer,
                true,
                dec("1"),
                "decimal value for BIGINT column",
            ),
            (
                ColumnType::Date,
                false,
                Value::Timestamp(0),
                "timestamp value for DATE column",
            ),
            (
                ColumnType::Timestamp,
                false,
                Value::Date(0),
                "date value for TIMESTAMP WITH TIME ZONE column",
            ),
            (
                ColumnType::Boolean,
                false,
                Value::Integer(1),
                "integer value for BOOLEAN column",
            ),
            (
                N18_2,
                false,
                Value::Double(1.5),
                "double value for NUMERIC(18,2) column",
            ),
            (
                ColumnType::Text,
                false,
                Value::Null,
                "NULL in NOT NULL column TEXT",
            ),
            (
                N18_2,
                false,
                dec("1.005"),
                "1.005 has more than 2 decimal places",
            ),
            (
                N18_2,
                false,
                dec("10000000000000000"),
                "10000000000000000 does not fit NUMERIC(18,2)",
            ),
            (
                N38_9,
                false,
                dec("123456789012345678901234567890"),
                "does not fit NUMERIC(38,9)",
            ),
            (
                ColumnType::Double,
                false,
                Value::Integer(i64::MAX),
                "cannot be stored exactly",
            ),
            (
                ColumnType::Date,
                false,
                Value::Date(-2_440_589),
                "out of range",
            ),
            (
                ColumnType::Timestamp,
                false,
                Value::Timestamp(i64::MAX),
                "out of range",
            ),
            (
                ColumnType::Timestamp,
                false,
                Value::Timestamp(-2_440_588 * MICROS_PER_DAY - 1),
                "out of range",
            ),
        ];
        for (ty, nullable, value, want) in cases {
            let r = reject(ty, nullable, value.clone());
            assert_eq!(r.index, 7, "{value:?}");
            assert_eq!(r.field.as_deref(), Some("c"), "{value:?}");
            assert!(
                r.reason.contains(want),
                "{value:?} into {ty:?}: got {:?}, want {want:?}",
                r.reason
            );
        }
    }

    #[test]
    fn a_rejected_row_leaves_the_buffer_unchanged() {
        let enc = RowEncoder::new(&Schema {
            columns: vec![
                col("Id", ColumnType::Integer, false),
                col("Name", ColumnType::Text, true),
                col("Amount", N18_2, false),
            ],
        });
        let mut buf = vec![9u8];
        let bad = Row {
            source: 3,
            values: vec![Value::Integer(1), Value::Text("x".into()), dec("0.001")],
        };
        let r = enc.encode_row(&bad, &mut buf).unwrap_err();
        assert_eq!(buf, [9]);
        assert_eq!(r.field.as_deref(), Some("Amount"));
        assert_eq!(r.index, 3);

        let short = Row {
            source: 4,
            values: vec![Value::Integer(1)],
        };
        let r = enc.encode_row(&short, &mut buf).unwrap_err();
        assert_eq!(r.field, None);
        assert!(
            r.reason.contains("1 values but the table has 3 columns"),
            "{}",
            r.reason
        );

        let good = Row {
            source: 5,
            values: vec![Value::Integer(2), Value::Null, dec("3")],
        };
        enc.encode_row(&good, &mut buf).unwrap();
        let mut want = vec![9u8];
        want.extend(2i64.to_le_bytes());
        want.push(1);
        want.extend(300i64.to_le_bytes());
        assert_eq!(buf, want);
    }
}
