//! Download packaging: a published extract downloads as a `.tdsx` (a zip
//! holding the `.tds` description and `Data/Extracts/<name>.hyper`), or
//! as the bare `.tds` with `includeExtract=false`, as on a real server.
//! The zip is written uncompressed ("stored"), which every unzip reads.

use crate::state::now_micros;

/// Why a package could not be built.
#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    /// A member is beyond what a non-zip64 archive can hold.
    #[error("the file {name} is {size} bytes, above the 4 GB a .tdsx here can hold")]
    TooBig {
        /// Member name.
        name: String,
        /// Its size.
        size: usize,
    },
}

/// XML-escapes an attribute value.
fn attr(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('\'', "&apos;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The `.tds` of a data source whose extract is `extract_path` inside the
/// package, reading `schema.table`.
pub fn tds(name: &str, extract_path: &str, schema: &str, table: &str) -> String {
    format!(
        "<?xml version='1.0' encoding='utf-8' ?>\n\
         <datasource formatted-name='{n}' inline='true' version='18.1' xmlns:user='http://www.tableausoftware.com/xml/user'>\n  \
         <connection class='hyper' dbname='{p}' schema='{s}' tablename='{t}' username='tableau_internal_user' default-settings='yes' />\n\
         </datasource>\n",
        n = attr(name),
        p = attr(extract_path),
        s = attr(schema),
        t = attr(table),
    )
}

/// DOS date and time of now (UTC).
fn dos_now() -> (u16, u16) {
    let secs = now_micros().div_euclid(1_000_000);
    let days = i32::try_from(secs.div_euclid(86_400)).unwrap_or(0);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = mlc_common::time::civil_from_days(days);
    let year = u16::try_from((y - 1980).clamp(0, 127)).unwrap_or(0);
    let date = (year << 9) | ((m as u16) << 5) | d as u16;
    let time =
        (((rem / 3600) as u16) << 11) | ((((rem / 60) % 60) as u16) << 5) | ((rem % 60) / 2) as u16;
    (date, time)
}

/// An uncompressed zip of `(name, bytes)` members.
pub fn stored_zip(members: &[(&str, &[u8])]) -> Result<Vec<u8>, PackageError> {
    let (date, time) = dos_now();
    let total: usize = members
        .iter()
        .map(|(n, b)| n.len() * 2 + b.len() + 128)
        .sum();
    let mut out = Vec::with_capacity(total + 64);
    let mut central = Vec::new();
    for (name, bytes) in members {
        let too_big = || PackageError::TooBig {
            name: (*name).to_owned(),
            size: bytes.len(),
        };
        let size = u32::try_from(bytes.len()).map_err(|_| too_big())?;
        let offset = u32::try_from(out.len()).map_err(|_| too_big())?;
        let name_len = u16::try_from(name.len()).map_err(|_| too_big())?;
        let crc = crc32fast::hash(bytes);
        // Local file header.
        out.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
        out.extend_from_slice(&20u16.to_le_bytes()); // version needed
        out.extend_from_slice(&0x0800u16.to_le_bytes()); // UTF-8 names
        out.extend_from_slice(&0u16.to_le_bytes()); // stored
        out.extend_from_slice(&time.to_le_bytes());
        out.extend_from_slice(&date.to_le_bytes());
        out.extend_from_slice(&crc.to_le_bytes());
        out.extend_from_slice(&size.to_le_bytes());
        out.extend_from_slice(&size.to_le_bytes());
        out.extend_from_slice(&name_len.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(bytes);
        // Central directory entry.
        central.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
        central.extend_from_slice(&20u16.to_le_bytes()); // made by
        central.extend_from_slice(&20u16.to_le_bytes()); // needed
        central.extend_from_slice(&0x0800u16.to_le_bytes());
        central.extend_from_slice(&0u16.to_le_bytes());
        central.extend_from_slice(&time.to_le_bytes());
        central.extend_from_slice(&date.to_le_bytes());
        central.extend_from_slice(&crc.to_le_bytes());
        central.extend_from_slice(&size.to_le_bytes());
        central.extend_from_slice(&size.to_le_bytes());
        central.extend_from_slice(&name_len.to_le_bytes());
        central.extend_from_slice(&[0u8; 8]); // extra, comment, disk, internal attrs
        central.extend_from_slice(&0u32.to_le_bytes()); // external attrs
        central.extend_from_slice(&offset.to_le_bytes());
        central.extend_from_slice(name.as_bytes());
    }
    let count = u16::try_from(members.len()).unwrap_or(u16::MAX);
    let too_big = || PackageError::TooBig {
        name: "(archive)".to_owned(),
        size: out.len(),
    };
    let cd_offset = u32::try_from(out.len()).map_err(|_| too_big())?;
    let cd_size = u32::try_from(central.len()).map_err(|_| too_big())?;
    out.extend_from_slice(&central);
    out.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
    out.extend_from_slice(&[0u8; 4]); // disk numbers
    out.extend_from_slice(&count.to_le_bytes());
    out.extend_from_slice(&count.to_le_bytes());
    out.extend_from_slice(&cd_size.to_le_bytes());
    out.extend_from_slice(&cd_offset.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u32_at(b: &[u8], at: usize) -> u32 {
        u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
    }

    #[test]
    fn zip_layout() {
        let zip = stored_zip(&[("a.tds", b"<x/>"), ("Data/b.hyper", b"HYPER")]).unwrap();
        assert_eq!(u32_at(&zip, 0), 0x0403_4b50);
        // CRC-32 of "<x/>" sits at offset 14 of the first local header.
        assert_eq!(u32_at(&zip, 14), crc32fast::hash(b"<x/>"));
        let end = zip.len() - 22;
        assert_eq!(u32_at(&zip, end), 0x0605_4b50);
        let cd_size = u32_at(&zip, end + 12) as usize;
        let cd_offset = u32_at(&zip, end + 16) as usize;
        assert_eq!(cd_offset + cd_size, end);
        assert_eq!(u32_at(&zip, cd_offset), 0x0201_4b50);
        // The second local header follows the first member.
        let second = 30 + "a.tds".len() + 4;
        assert_eq!(u32_at(&zip, second), 0x0403_4b50);
    }

    #[test]
    fn tds_escapes() {
        let text = tds("a'b", "Data/Extracts/a'b.hyper", "Extract", "Extract");
        assert!(text.contains("formatted-name='a&apos;b'"), "{text}");
    }
}
