//! The encodings of the `raw` and `latest` table values, defined here and
//! nowhere else.

/// A version: flag (1 = has a timestamp), timestamp, hash, lz4 of the JSON
/// (its length as a little-endian `u32`, then the block: lz4_flex's
/// size-prepended format).
pub(crate) fn encode_version(last_update: Option<i64>, hash: &[u8; 32], json: &str) -> Vec<u8> {
    let input = json.as_bytes();
    let Ok(len) = u32::try_from(input.len()) else {
        // Over 4 GiB (no page holds that): the library's own path, which
        // writes the same format.
        let compressed = lz4_flex::compress_prepend_size(input);
        let mut out = header(last_update, hash, compressed.len());
        out.extend_from_slice(&compressed);
        return out;
    };
    // Compressed straight into the value, not into a buffer copied after.
    let mut out = header(
        last_update,
        hash,
        4 + lz4_flex::block::get_maximum_output_size(input.len()),
    );
    out.extend_from_slice(&len.to_le_bytes());
    let start = out.len();
    out.resize(
        start + lz4_flex::block::get_maximum_output_size(input.len()),
        0,
    );
    match lz4_flex::block::compress_into(input, &mut out[start..]) {
        Ok(written) => out.truncate(start + written),
        // The output is sized to the bound; should the library still
        // refuse, its allocating path writes the same format.
        Err(_) => {
            out.truncate(41);
            out.extend_from_slice(&lz4_flex::compress_prepend_size(input));
        }
    }
    out
}

fn header(last_update: Option<i64>, hash: &[u8; 32], room: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(41 + room);
    out.push(u8::from(last_update.is_some()));
    out.extend_from_slice(&last_update.unwrap_or(0).to_le_bytes());
    out.extend_from_slice(hash);
    out
}

pub(crate) fn decode_version(bytes: &[u8]) -> Option<(Option<i64>, [u8; 32], String)> {
    let flag = *bytes.first()?;
    let lu = i64::from_le_bytes(bytes.get(1..9)?.try_into().ok()?);
    let hash: [u8; 32] = bytes.get(9..41)?.try_into().ok()?;
    let json = lz4_flex::decompress_size_prepended(bytes.get(41..)?).ok()?;
    Some((
        (flag == 1).then_some(lu),
        hash,
        String::from_utf8(json).ok()?,
    ))
}

/// Latest pointer: seq, flag, timestamp, hash.
pub(crate) fn encode_latest(seq: u64, last_update: Option<i64>, hash: &[u8; 32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(49);
    out.extend_from_slice(&seq.to_le_bytes());
    out.push(u8::from(last_update.is_some()));
    out.extend_from_slice(&last_update.unwrap_or(0).to_le_bytes());
    out.extend_from_slice(hash);
    out
}

pub(crate) fn decode_latest(bytes: &[u8]) -> Option<(u64, Option<i64>, [u8; 32])> {
    let seq = u64::from_le_bytes(bytes.get(0..8)?.try_into().ok()?);
    let flag = *bytes.get(8)?;
    let lu = i64::from_le_bytes(bytes.get(9..17)?.try_into().ok()?);
    let hash: [u8; 32] = bytes.get(17..49)?.try_into().ok()?;
    Some((seq, (flag == 1).then_some(lu), hash))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_version_is_the_library_format_and_reads_back() {
        let json = r#"{"InvoiceId":1,"InvoiceNumber":"INV-1","InvoiceNumber2":"INV-1"}"#;
        let hash = [7u8; 32];
        let bytes = encode_version(Some(42), &hash, json);
        assert_eq!(
            &bytes[41..],
            lz4_flex::compress_prepend_size(json.as_bytes())
        );
        assert_eq!(
            decode_version(&bytes),
            Some((Some(42), hash, json.to_owned()))
        );
        let empty = encode_version(None, &hash, "");
        assert_eq!(decode_version(&empty), Some((None, hash, String::new())));
    }
}
