//! A bounds check of a parquet file's footer before polars decodes it.
//!
//! The footer is a thrift compact-protocol `FileMetaData`. polars-parquet sizes each
//! list's `Vec` from the length the list header claims, so a corrupt header claiming
//! billions of elements makes it allocate that much up front and abort the process (found
//! by the `parquet` fuzz target: 79 GB from a 1.5 KB file). This walks the same bytes
//! without allocating and refuses any list, set, map or binary that claims more elements
//! or bytes than the footer has left, and any nesting deeper than [`MAX_DEPTH`]. A footer
//! that passes bounds polars' pre-sized allocations by its own length.

use std::fmt;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};

const MAGIC: &[u8; 4] = b"PAR1";
/// The footer's trailer: its 4-byte little-endian length, then the magic.
const TRAILER: u64 = 8;
/// Far deeper than any real `FileMetaData` (a schema is a flat list of elements).
const MAX_DEPTH: usize = 64;

/// Why a footer was refused, with the byte offset inside the footer where it went wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FooterError {
    /// Too short to hold a header, a footer and the trailer.
    TooShort { file_len: u64 },
    NoMagic,
    /// The trailer's length points before the start of the file.
    Length { claimed: u64, file_len: u64 },
    /// A list, set, map or binary claims more than the footer holds.
    Oversized {
        what: &'static str,
        claimed: u64,
        remaining: u64,
        at: usize,
    },
    Truncated { at: usize },
    BadType { code: u8, at: usize },
    TooDeep { at: usize },
    Io(String),
}

impl fmt::Display for FooterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooShort { file_len } => write!(
                f,
                "{file_len} bytes is too short for a parquet file (at least 12)"
            ),
            Self::NoMagic => write!(f, "does not end with the parquet magic PAR1"),
            Self::Length { claimed, file_len } => write!(
                f,
                "the footer claims {claimed} bytes but the file has {file_len}"
            ),
            Self::Oversized {
                what,
                claimed,
                remaining,
                at,
            } => write!(
                f,
                "corrupt footer: a {what} at footer byte {at} claims {claimed} \
                 elements or bytes, but only {remaining} bytes follow"
            ),
            Self::Truncated { at } => write!(f, "corrupt footer: it ends early at byte {at}"),
            Self::BadType { code, at } => {
                write!(f, "corrupt footer: unknown thrift type {code} at byte {at}")
            }
            Self::TooDeep { at } => write!(
                f,
                "corrupt footer: nested deeper than {MAX_DEPTH} levels at byte {at}"
            ),
            Self::Io(e) => write!(f, "cannot read the footer: {e}"),
        }
    }
}

/// Reads the footer of `file` and checks it (see the module docs), then rewinds `file`.
pub(crate) fn check(file: &mut File) -> Result<(), FooterError> {
    let io = |e: std::io::Error| FooterError::Io(e.to_string());
    let file_len = file.seek(SeekFrom::End(0)).map_err(io)?;
    // "PAR1" at the start, then the footer, its length and "PAR1" again.
    if file_len < 4 + TRAILER {
        return Err(FooterError::TooShort { file_len });
    }
    let mut trailer = [0u8; TRAILER as usize];
    file.seek(SeekFrom::End(-(TRAILER as i64))).map_err(io)?;
    file.read_exact(&mut trailer).map_err(io)?;
    if &trailer[4..] != MAGIC {
        return Err(FooterError::NoMagic);
    }
    let claimed = u64::from(u32::from_le_bytes(trailer[..4].try_into().expect("4 bytes")));
    if claimed + TRAILER > file_len {
        return Err(FooterError::Length { claimed, file_len });
    }
    let mut footer = vec![0u8; claimed as usize];
    file.seek(SeekFrom::End(-((claimed + TRAILER) as i64)))
        .map_err(io)?;
    file.read_exact(&mut footer).map_err(io)?;
    check_metadata(&footer)?;
    file.rewind().map_err(io)
}

/// Checks one thrift compact-protocol struct, the `FileMetaData`, in `footer`.
pub(crate) fn check_metadata(footer: &[u8]) -> Result<(), FooterError> {
    Walker {
        bytes: footer,
        at: 0,
    }
    .skip(STRUCT, 0)
}

// Thrift compact-protocol type codes.
const BOOL_TRUE: u8 = 1;
const BOOL_FALSE: u8 = 2;
const I8: u8 = 3;
const I16: u8 = 4;
const I32: u8 = 5;
const I64: u8 = 6;
const DOUBLE: u8 = 7;
const BINARY: u8 = 8;
const LIST: u8 = 9;
const SET: u8 = 10;
const MAP: u8 = 11;
const STRUCT: u8 = 12;
const UUID: u8 = 13;

struct Walker<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Walker<'_> {
    fn remaining(&self) -> u64 {
        (self.bytes.len() - self.at) as u64
    }

    fn byte(&mut self) -> Result<u8, FooterError> {
        let b = *self
            .bytes
            .get(self.at)
            .ok_or(FooterError::Truncated { at: self.at })?;
        self.at += 1;
        Ok(b)
    }

    fn advance(&mut self, n: u64, what: &'static str) -> Result<(), FooterError> {
        self.bounded(n, what)?;
        self.at += n as usize;
        Ok(())
    }

    /// Refuses a claim of `n` elements or bytes when fewer bytes than that follow: every
    /// element of a list, set or map takes at least one byte.
    fn bounded(&self, n: u64, what: &'static str) -> Result<(), FooterError> {
        let remaining = self.remaining();
        if n > remaining {
            return Err(FooterError::Oversized {
                what,
                claimed: n,
                remaining,
                at: self.at,
            });
        }
        Ok(())
    }

    /// An unsigned LEB128 varint (at most 10 bytes).
    fn varint(&mut self) -> Result<u64, FooterError> {
        let start = self.at;
        let mut value = 0u64;
        for shift in (0..70).step_by(7) {
            let b = self.byte()?;
            if shift == 63 && b > 1 {
                return Err(FooterError::BadType { code: b, at: start });
            }
            value |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(FooterError::BadType {
            code: 0x80,
            at: start,
        })
    }

    /// Skips one value of type `ty` (as it appears in a field or a collection).
    fn skip(&mut self, ty: u8, depth: usize) -> Result<(), FooterError> {
        if depth > MAX_DEPTH {
            return Err(FooterError::TooDeep { at: self.at });
        }
        match ty {
            // In a field, a bool is the type code itself; in a collection, one byte.
            BOOL_TRUE | BOOL_FALSE | I8 => self.advance(1, "bool"),
            I16 | I32 | I64 => self.varint().map(drop),
            DOUBLE => self.advance(8, "double"),
            UUID => self.advance(16, "uuid"),
            BINARY => {
                let len = self.varint()?;
                self.advance(len, "binary")
            }
            LIST | SET => self.collection(depth),
            MAP => self.map(depth),
            STRUCT => self.fields(depth),
            code => Err(FooterError::BadType {
                code,
                at: self.at.saturating_sub(1),
            }),
        }
    }

    fn fields(&mut self, depth: usize) -> Result<(), FooterError> {
        loop {
            let header = self.byte()?;
            if header == 0 {
                return Ok(());
            }
            if header >> 4 == 0 {
                self.varint()?; // the full field id, zigzag i16
            }
            match header & 0x0f {
                BOOL_TRUE | BOOL_FALSE => {}
                ty => self.skip(ty, depth + 1)?,
            }
        }
    }

    fn collection(&mut self, depth: usize) -> Result<(), FooterError> {
        let header = self.byte()?;
        let count = match header >> 4 {
            15 => self.varint()?,
            n => u64::from(n),
        };
        let ty = header & 0x0f;
        // fastparquet writes an empty list as a bare 0x00, with no element type.
        if count == 0 {
            return Ok(());
        }
        self.bounded(count, "list")?;
        for _ in 0..count {
            self.skip(ty, depth + 1)?;
        }
        Ok(())
    }

    fn map(&mut self, depth: usize) -> Result<(), FooterError> {
        let count = self.varint()?;
        if count == 0 {
            return Ok(());
        }
        let types = self.byte()?;
        self.bounded(count.saturating_mul(2), "map")?;
        for _ in 0..count {
            self.skip(types >> 4, depth + 1)?;
            self.skip(types & 0x0f, depth + 1)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A list field (id 2, delta 2) of `count` i32s, written with a long count.
    fn list_field(count: u64, elements: &[u8]) -> Vec<u8> {
        let mut out = vec![(2 << 4) | LIST, 0xf0 | I32];
        let mut n = count;
        loop {
            let b = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(b);
                break;
            }
            out.push(b | 0x80);
        }
        out.extend_from_slice(elements);
        out
    }

    #[test]
    fn a_well_formed_struct_passes() {
        // field 1: i32 7; field 2: list of 16 i32s; field 3: binary "ab"; field 4: bool;
        // field 5: a struct holding a map {1: "x"}; stop.
        let mut m = vec![(1 << 4) | I32, 14];
        m.extend(list_field(16, &[2; 16]));
        m.extend([(1 << 4) | BINARY, 2, b'a', b'b']);
        m.push((1 << 4) | BOOL_TRUE);
        m.extend([(1 << 4) | STRUCT, (1 << 4) | MAP, 1, (I32 << 4) | BINARY, 2, 1, b'x', 0]);
        m.push(0);
        assert_eq!(check_metadata(&m), Ok(()));
    }

    #[test]
    fn an_empty_fastparquet_list_passes() {
        assert_eq!(check_metadata(&[(2 << 4) | LIST, 0x00, 0]), Ok(()));
    }

    #[test]
    fn a_list_claiming_more_than_the_footer_holds_is_refused() {
        let mut m = list_field(5_000_000_000, &[2; 4]);
        m.push(0);
        let err = check_metadata(&m).unwrap_err();
        assert!(
            matches!(
                err,
                FooterError::Oversized {
                    what: "list",
                    claimed: 5_000_000_000,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("claims 5000000000"), "{err}");
    }

    #[test]
    fn an_oversized_binary_and_map_are_refused() {
        let binary = [(1 << 4) | BINARY, 0xff, 0xff, 0x03, b'a', 0];
        assert!(matches!(
            check_metadata(&binary),
            Err(FooterError::Oversized { what: "binary", .. })
        ));
        let map = [(1 << 4) | MAP, 0x7f, (I32 << 4) | I32, 1, 1, 0];
        assert!(matches!(
            check_metadata(&map),
            Err(FooterError::Oversized { what: "map", .. })
        ));
    }

    #[test]
    fn truncation_depth_and_unknown_types_are_refused() {
        assert_eq!(
            check_metadata(&[(1 << 4) | I32]),
            Err(FooterError::Truncated { at: 1 })
        );
        let deep: Vec<u8> = std::iter::repeat_n((1 << 4) | STRUCT, 200).collect();
        assert!(matches!(
            check_metadata(&deep),
            Err(FooterError::TooDeep { .. })
        ));
        assert!(matches!(
            check_metadata(&[(1 << 4) | 14, 0]),
            Err(FooterError::BadType { code: 14, .. })
        ));
    }

    #[test]
    fn the_shipped_datasets_footers_pass() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("datasets");
        let mut checked = 0;
        for entry in walk(&dir) {
            if entry.extension().is_some_and(|e| e == "parquet") {
                let mut f = File::open(&entry).unwrap();
                assert_eq!(check(&mut f), Ok(()), "{}", entry.display());
                checked += 1;
            }
        }
        assert!(checked >= 2, "only {checked} parquet files under datasets/");
    }

    fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
        out
    }
}
