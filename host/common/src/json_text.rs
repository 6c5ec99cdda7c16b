//! JSON string contents (and flag texts), shared by the guests' JSON scanners (the SDK's
//! field index and the mapping-script scanner), which borrow string
//! contents from the record, skip them eight bytes at a time and decode
//! them only when a value is used.

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// High bit set in the lowest byte of `word` equal to `byte` (bytes above
/// it may be flagged falsely; callers use only the lowest).
#[inline(always)]
fn equal_bytes(word: u64, byte: u8) -> u64 {
    let x = word ^ (ONES * u64::from(byte));
    x.wrapping_sub(ONES) & !x & HIGHS
}

/// The index of the first byte at or after `i` that ends a run of plain
/// string content — `"` or `\\`, and with `stop_at_control` also a byte
/// below 0x20 — eight bytes at a time; `bytes.len()` when there is none.
/// Each test is exact for its lowest hit, so the lowest bit of their union
/// is a real one.
#[inline(always)]
pub fn string_run_end(bytes: &[u8], mut i: usize, stop_at_control: bool) -> usize {
    while let Some(chunk) = bytes.get(i..i + 8) {
        let mut buf = [0u8; 8];
        buf.copy_from_slice(chunk);
        let word = u64::from_le_bytes(buf);
        let mut hits = equal_bytes(word, b'"') | equal_bytes(word, b'\\');
        if stop_at_control {
            hits |= word.wrapping_sub(ONES * 0x20) & !word & HIGHS;
        }
        if hits != 0 {
            return i + (hits.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while let Some(&b) = bytes.get(i) {
        if b == b'"' || b == b'\\' || (stop_at_control && b < 0x20) {
            return i;
        }
        i += 1;
    }
    bytes.len()
}

/// Decodes the escapes of a JSON string's content (the text between the
/// quotes); `None` when an escape is invalid (an unknown letter, a short
/// `\u`, an unpaired surrogate).
pub fn unescape(raw: &str) -> Option<String> {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next()? {
            '"' => out.push('"'),
            '\\' => out.push('\\'),
            '/' => out.push('/'),
            'b' => out.push('\u{8}'),
            'f' => out.push('\u{c}'),
            'n' => out.push('\n'),
            'r' => out.push('\r'),
            't' => out.push('\t'),
            'u' => {
                let first = hex4(&mut chars)?;
                let code = if (0xD800..0xDC00).contains(&first) {
                    // A surrogate pair: \uD83D\uDE00.
                    if chars.next()? != '\\' || chars.next()? != 'u' {
                        return None;
                    }
                    let second = hex4(&mut chars)?;
                    if !(0xDC00..0xE000).contains(&second) {
                        return None;
                    }
                    0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00)
                } else {
                    first
                };
                out.push(char::from_u32(code)?);
            }
            _ => return None,
        }
    }
    Some(out)
}

fn hex4(chars: &mut std::str::Chars<'_>) -> Option<u32> {
    let mut n = 0u32;
    for _ in 0..4 {
        n = n * 16 + chars.next()?.to_digit(16)?;
    }
    Some(n)
}

/// A yes/no flag written as text, as Oracle Fusion writes many of them:
/// `Y`/`N`, `Yes`/`No`, `True`/`False`, in any case, surrounding spaces
/// ignored. `None` for any other text. Both guest mappers (the SDK's
/// `boolean` and the mapping scripts' `boolean` columns and `flag`) read
/// flags with it.
#[inline]
pub fn flag_text(text: &str) -> Option<bool> {
    // Oracle's own `Y`/`N` first, without trimming or comparing words.
    match text.as_bytes() {
        [b'Y' | b'y'] => return Some(true),
        [b'N' | b'n'] => return Some(false),
        _ => {}
    }
    let t = text.trim();
    if ["y", "yes", "true"]
        .iter()
        .any(|w| t.eq_ignore_ascii_case(w))
    {
        Some(true)
    } else if ["n", "no", "false"]
        .iter()
        .any(|w| t.eq_ignore_ascii_case(w))
    {
        Some(false)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_texts() {
        for yes in ["Y", "y", "Yes", "YES", " yes ", "true", "True", "TRUE"] {
            assert_eq!(flag_text(yes), Some(true), "{yes:?}");
        }
        for no in ["N", "n", "No", "NO", "false", "False", " N"] {
            assert_eq!(flag_text(no), Some(false), "{no:?}");
        }
        for neither in ["", "1", "0", "T", "F", "ye", "nope", "Y N"] {
            assert_eq!(flag_text(neither), None, "{neither:?}");
        }
    }

    #[test]
    fn string_runs_end_where_the_bytewise_definition_says() {
        for stop_at_control in [false, true] {
            let special = |b: u8| b == b'"' || b == b'\\' || (stop_at_control && b < 0x20);
            let expected = |text: &[u8], from: usize| {
                text[from..]
                    .iter()
                    .position(|&c| special(c))
                    .map_or(text.len(), |p| p + from)
            };
            for b in 0..=255u8 {
                for at in 0..17 {
                    let mut text = vec![b'a'; 20];
                    text[at] = b;
                    // Multi-byte UTF-8 after the hit must not be taken for one.
                    text[19] = 0xC3;
                    for from in [0, 3] {
                        assert_eq!(
                            string_run_end(&text, from, stop_at_control),
                            expected(&text, from),
                            "byte {b:#x} at {at} from {from}, control {stop_at_control}"
                        );
                    }
                }
            }
            assert_eq!(string_run_end(b"", 0, stop_at_control), 0);
        }
    }

    #[test]
    fn unescapes_all_forms() {
        assert_eq!(
            unescape(r#"a\n\t\"\\\/\u00e9\ud83d\ude00\b\f\r"#).unwrap(),
            "a\n\t\"\\/é😀\u{8}\u{c}\r"
        );
        assert_eq!(unescape("plain").unwrap(), "plain");
        assert!(unescape(r"\x").is_none());
        assert!(unescape(r"\ud83d").is_none());
        assert!(unescape(r"\ud83d\u0041").is_none());
        assert!(unescape(r"\u12").is_none());
        assert!(unescape("\\").is_none());
    }
}
