//! JSON string escapes, shared by the guests' JSON scanners (the SDK's
//! field index and the mapping-script scanner), which borrow string
//! contents from the record and decode them only when a value is used.

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

#[cfg(test)]
mod tests {
    use super::*;

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
