//! The encodings of the `raw` and `latest` table values, defined here and
//! nowhere else.

/// A version: flag (1 = has a timestamp), timestamp, hash, lz4 of the JSON.
pub(crate) fn encode_version(last_update: Option<i64>, hash: &[u8; 32], json: &str) -> Vec<u8> {
    let compressed = lz4_flex::compress_prepend_size(json.as_bytes());
    let mut out = Vec::with_capacity(41 + compressed.len());
    out.push(u8::from(last_update.is_some()));
    out.extend_from_slice(&last_update.unwrap_or(0).to_le_bytes());
    out.extend_from_slice(hash);
    out.extend_from_slice(&compressed);
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
