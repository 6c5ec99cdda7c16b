//! Exact decimal numbers: an unscaled `i128` and a scale.
//!
//! Oracle sends amounts as JSON numbers (`1250.00`, `-0.5`, `1.25E3`); Hyper
//! stores `NUMERIC(p, s)` as an unscaled integer. Between the two nothing may
//! round, so parsing reads the digits as text and rescaling refuses to drop
//! a non-zero digit.

use std::fmt;
use std::str::FromStr;

/// Largest scale and precision we handle (Hyper's `NUMERIC` maximum).
pub const MAX_PRECISION: u8 = 38;

/// An exact decimal: `unscaled × 10^-scale`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Decimal {
    /// The digits as an integer.
    pub unscaled: i128,
    /// How many of those digits are after the decimal point.
    pub scale: u8,
}

/// Why a decimal could not be parsed or converted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecimalError {
    /// The text is not a decimal number.
    #[error("not a decimal number: {0:?}")]
    Syntax(String),
    /// More than 38 significant digits, or an exponent out of range.
    #[error("decimal out of range: {0:?}")]
    Overflow(String),
    /// Rescaling would drop non-zero digits.
    #[error("{value} has more than {scale} decimal places")]
    Inexact {
        /// The value as given.
        value: String,
        /// The scale asked for.
        scale: u8,
    },
    /// The value needs more digits than the column's precision.
    #[error("{value} does not fit NUMERIC({precision},{scale})")]
    Precision {
        /// The value as given.
        value: String,
        /// Column precision.
        precision: u8,
        /// Column scale.
        scale: u8,
    },
}

/// Below this a `u64` takes one more decimal digit without overflowing.
const NARROW_LIMIT: u64 = 1_000_000_000_000_000_000;

const POW10: [i128; 39] = {
    let mut t = [1i128; 39];
    let mut i = 1;
    while i < 39 {
        t[i] = t[i - 1] * 10;
        i += 1;
    }
    t
};

/// `10^n` for `n <= 38`.
pub fn pow10(n: u8) -> Option<i128> {
    POW10.get(usize::from(n)).copied()
}

impl Decimal {
    /// A decimal from its parts.
    pub const fn new(unscaled: i128, scale: u8) -> Self {
        Self { unscaled, scale }
    }

    /// Parses `-123.4500`, `+7`, `.5`, `1.25E3`, `1e-2` exactly. The scale is
    /// the number of digits written after the point (adjusted by the
    /// exponent, never below 0).
    pub fn parse(text: &str) -> Result<Self, DecimalError> {
        let err = || DecimalError::Syntax(text.to_owned());
        let overflow = || DecimalError::Overflow(text.to_owned());
        let bytes = text.as_bytes();
        let mut i = 0;
        let negative = match bytes.first() {
            Some(b'-') => {
                i += 1;
                true
            }
            Some(b'+') => {
                i += 1;
                false
            }
            _ => false,
        };
        // Digits accumulate in a u64 while they fit (wasm32 has no 128-bit
        // multiply: every i128 step would be a library call), then in i128.
        let mut narrow: u64 = 0;
        let mut wide: Option<i128> = None;
        let mut digits = 0usize;
        let mut significant = 0usize;
        let mut frac_digits: i64 = 0;
        let mut seen_point = false;
        while i < bytes.len() {
            let b = bytes[i];
            match b {
                b'0'..=b'9' => {
                    digits += 1;
                    if significant != 0 || b != b'0' {
                        significant += 1;
                    }
                    if significant > usize::from(MAX_PRECISION) {
                        return Err(overflow());
                    }
                    let digit = b - b'0';
                    match &mut wide {
                        Some(w) => *w = *w * 10 + i128::from(digit),
                        // Below 10^18 one more digit stays below 10^19 < 2^64.
                        None if narrow < NARROW_LIMIT => narrow = narrow * 10 + u64::from(digit),
                        None => wide = Some(i128::from(narrow) * 10 + i128::from(digit)),
                    }
                    if seen_point {
                        frac_digits += 1;
                    }
                }
                b'.' if !seen_point => seen_point = true,
                b'e' | b'E' => break,
                _ => return Err(err()),
            }
            i += 1;
        }
        if digits == 0 {
            return Err(err());
        }
        let mut unscaled = wide.unwrap_or(i128::from(narrow));
        let mut exponent: i64 = 0;
        if i < bytes.len() {
            // exponent part
            let exp_text = text.get(i + 1..).ok_or_else(err)?;
            if exp_text.is_empty() {
                return Err(err());
            }
            exponent = exp_text.parse::<i64>().map_err(|_| err())?;
            if exponent.abs() > 76 {
                return Err(overflow());
            }
        }
        let mut scale = frac_digits - exponent;
        if scale < 0 {
            let up = u8::try_from(-scale).map_err(|_| overflow())?;
            let factor = pow10(up).ok_or_else(overflow)?;
            unscaled = unscaled.checked_mul(factor).ok_or_else(overflow)?;
            scale = 0;
        }
        let scale = u8::try_from(scale).map_err(|_| overflow())?;
        if scale > MAX_PRECISION {
            return Err(overflow());
        }
        if unscaled.unsigned_abs() >= POW10[38] as u128 {
            return Err(overflow());
        }
        Ok(Self {
            unscaled: if negative { -unscaled } else { unscaled },
            scale,
        })
    }

    /// The same value at another scale; refuses to drop a non-zero digit.
    pub fn rescale(self, scale: u8) -> Result<Self, DecimalError> {
        if scale == self.scale {
            return Ok(self);
        }
        let inexact = || DecimalError::Inexact {
            value: self.to_string(),
            scale,
        };
        if scale > self.scale {
            let factor = pow10(scale - self.scale).ok_or_else(inexact)?;
            // 64-bit first: i128 multiplication is a library call on wasm32.
            if let (Ok(small), Ok(f)) = (i64::try_from(self.unscaled), i64::try_from(factor))
                && let Some(product) = small.checked_mul(f)
            {
                return Ok(Self {
                    unscaled: i128::from(product),
                    scale,
                });
            }
            let unscaled = self.unscaled.checked_mul(factor).ok_or_else(inexact)?;
            Ok(Self { unscaled, scale })
        } else {
            let factor = pow10(self.scale - scale).ok_or_else(inexact)?;
            // 64-bit first: i128 division is a library call on wasm32.
            let (quotient, remainder) = match (i64::try_from(self.unscaled), i64::try_from(factor))
            {
                (Ok(small), Ok(f)) => (i128::from(small / f), small % f),
                _ => (
                    self.unscaled / factor,
                    i64::from(self.unscaled % factor != 0),
                ),
            };
            if remainder != 0 {
                return Err(inexact());
            }
            Ok(Self {
                unscaled: quotient,
                scale,
            })
        }
    }

    /// Rescales to `scale` and checks that the result has at most
    /// `precision` digits: the value as a `NUMERIC(precision, scale)`.
    pub fn fit(self, precision: u8, scale: u8) -> Result<Self, DecimalError> {
        let scaled = self.rescale(scale)?;
        let limit = pow10(precision).ok_or_else(|| DecimalError::Precision {
            value: self.to_string(),
            precision,
            scale,
        })?;
        if scaled.unscaled.unsigned_abs() >= limit as u128 {
            return Err(DecimalError::Precision {
                value: self.to_string(),
                precision,
                scale,
            });
        }
        Ok(scaled)
    }

    /// The nearest `f64` (for `double` columns only; lossy by nature).
    pub fn to_f64(self) -> f64 {
        // Through text: the standard library's parser rounds correctly.
        self.to_string().parse::<f64>().unwrap_or(f64::NAN)
    }
}

impl FromStr for Decimal {
    type Err = DecimalError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let digits = self.unscaled.unsigned_abs().to_string();
        if self.unscaled < 0 {
            f.write_str("-")?;
        }
        let scale = usize::from(self.scale);
        if scale == 0 {
            return f.write_str(&digits);
        }
        if digits.len() > scale {
            let (int, frac) = digits.split_at(digits.len() - scale);
            write!(f, "{int}.{frac}")
        } else {
            write!(f, "0.{}{}", "0".repeat(scale - digits.len()), digits)
        }
    }
}

impl serde::Serialize for Decimal {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Decimal {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_exactly() {
        for (text, unscaled, scale, back) in [
            ("1250.00", 125000, 2, "1250.00"),
            ("-0.5", -5, 1, "-0.5"),
            ("+7", 7, 0, "7"),
            (".05", 5, 2, "0.05"),
            ("1.25E3", 1250, 0, "1250"),
            ("1e-2", 1, 2, "0.01"),
            ("0", 0, 0, "0"),
            (
                "12345678901234567890123456.123456789012",
                12345678901234567890123456123456789012,
                12,
                "12345678901234567890123456.123456789012",
            ),
        ] {
            let d = Decimal::parse(text).unwrap();
            assert_eq!((d.unscaled, d.scale), (unscaled, scale), "{text}");
            assert_eq!(d.to_string(), back, "{text}");
        }
    }

    #[test]
    fn refuses_garbage_and_overflow() {
        for text in ["", "-", "1.2.3", "abc", "1e", "1e+", "--1", "1,5"] {
            assert!(
                matches!(Decimal::parse(text), Err(DecimalError::Syntax(_))),
                "{text}"
            );
        }
        assert!(matches!(
            Decimal::parse("123456789012345678901234567890123456789"),
            Err(DecimalError::Overflow(_))
        ));
    }

    #[test]
    fn rescale_is_exact_or_refused() {
        let d = Decimal::parse("12.30").unwrap();
        assert_eq!(d.rescale(4).unwrap().to_string(), "12.3000");
        assert_eq!(d.rescale(1).unwrap().to_string(), "12.3");
        assert!(matches!(d.rescale(0), Err(DecimalError::Inexact { .. })));
        assert_eq!(d.fit(4, 2).unwrap().unscaled, 1230);
        assert!(matches!(d.fit(3, 2), Err(DecimalError::Precision { .. })));
    }

    #[test]
    fn long_digit_runs_cross_from_u64_to_i128_exactly() {
        // Around 10^18 (where accumulation leaves u64), u64::MAX, and up to
        // the 38-digit limit, signed, with points, leading zeros and
        // exponents: the value must equal the digits read as one integer.
        let runs = [
            "999999999999999999",
            "1000000000000000000",
            "1000000000000000001",
            "9999999999999999999",
            "18446744073709551615",
            "18446744073709551616",
            "123456789012345678901234567890",
            "99999999999999999999999999999999999999",
            "0000000000000000000000000000000000000000000012",
        ];
        for run in runs {
            let whole: i128 = run.parse().unwrap();
            for sign in ["", "-", "+"] {
                let expected = if sign == "-" { -whole } else { whole };
                let d = Decimal::parse(&format!("{sign}{run}")).unwrap();
                assert_eq!((d.unscaled, d.scale), (expected, 0), "{sign}{run}");
                let point = run.len() - 3;
                let text = format!("{sign}{}.{}", &run[..point], &run[point..]);
                let d = Decimal::parse(&text).unwrap();
                assert_eq!((d.unscaled, d.scale), (expected, 3), "{text}");
                let text = format!("{sign}{run}E-2");
                let d = Decimal::parse(&text).unwrap();
                assert_eq!((d.unscaled, d.scale), (expected, 2), "{text}");
            }
        }
        let d = Decimal::parse("-1234567890123456789.5e1").unwrap();
        assert_eq!((d.unscaled, d.scale), (-12345678901234567895, 0));
        assert!(matches!(
            Decimal::parse("1234567890123456789012345678901234567e2"),
            Err(DecimalError::Overflow(_))
        ));
    }

    #[test]
    fn rescale_is_exact_beyond_64_bits() {
        // Up: within i64, just past it, and past i128's 38 digits.
        let d = Decimal::new(-922_337_203_685_477_580, 0);
        assert_eq!(d.rescale(1).unwrap().unscaled, -9_223_372_036_854_775_800);
        assert_eq!(
            d.rescale(2).unwrap().unscaled,
            -92_233_720_368_547_758_000_i128
        );
        assert_eq!(
            Decimal::new(i128::from(i64::MAX), 0)
                .rescale(19)
                .unwrap()
                .unscaled,
            i128::from(i64::MAX) * 10_i128.pow(19)
        );
        assert!(matches!(
            Decimal::new(i128::from(i64::MAX), 0).rescale(20),
            Err(DecimalError::Inexact { .. })
        ));
        // Down: exact and inexact, small and wide, negative.
        let wide = Decimal::new(-123_456_789_012_345_678_901_234_500, 4);
        assert_eq!(
            wide.rescale(2).unwrap().unscaled,
            -1_234_567_890_123_456_789_012_345
        );
        assert!(matches!(wide.rescale(1), Err(DecimalError::Inexact { .. })));
        assert_eq!(Decimal::new(-1500, 3).rescale(1).unwrap().unscaled, -15);
        assert!(matches!(
            Decimal::new(-1501, 3).rescale(1),
            Err(DecimalError::Inexact { .. })
        ));
        assert_eq!(Decimal::new(0, 5).rescale(0).unwrap(), Decimal::new(0, 0));
    }

    #[test]
    fn serde_round_trip_is_text() {
        let d = Decimal::parse("99999999999999999.99").unwrap();
        let json = serde_json::to_string(&d).unwrap();
        assert_eq!(json, "\"99999999999999999.99\"");
        let back: Decimal = serde_json::from_str(&json).unwrap();
        assert_eq!(back, d);
    }
}
