//! A bounds check of a parquet file's footer before polars decodes it.
//!
//! The footer is a thrift compact-protocol `FileMetaData`. polars-parquet sizes each
//! list's `Vec` from the length the list header claims, so a corrupt header claiming
//! billions of elements makes it allocate that much up front and abort the process (found
//! by the `parquet` fuzz target: 79 GB from a 1.5 KB file). This walks the same bytes
//! without allocating and refuses any list, set, map or binary that claims more elements
//! or bytes than the footer has left, and any nesting deeper than [`MAX_DEPTH`]. A footer
//! that passes bounds polars' pre-sized allocations by its own length.
//!
//! polars also reserves buffers (validity bitmaps, values) from the row and value counts
//! the footer states, so those are checked too: the file's and each row group's
//! `num_rows` and each column chunk's `num_values` must be non-negative and at most
//! [`VALUES_PER_BYTE`] per byte of the file, and a chunk's compressed size at most the
//! file's length.
//!
//! Then each column chunk's page headers are walked the same way, as polars' page reader
//! meets them, with their sizes and counts bounded too (the fuzzer found a data page whose
//! negative `num_values` made polars reserve a 2^61-byte validity bitmap).

use std::fmt;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};

const MAGIC: &[u8; 4] = b"PAR1";
/// The footer's trailer: its 4-byte little-endian length, then the magic.
const TRAILER: u64 = 8;
/// Far deeper than any real `FileMetaData` (a schema is a flat list of elements).
const MAX_DEPTH: usize = 64;
/// A count above 8 values per byte of the file (under one bit each, over every column) is
/// refused as corrupt: no dataset this loader reads packs its rows that tightly.
const VALUES_PER_BYTE: u64 = 8;

/// Why a footer (or a page header) was refused, with the byte offset inside it where it
/// went wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FooterError {
    /// Too short to hold a header, a footer and the trailer.
    TooShort {
        file_len: u64,
    },
    NoMagic,
    /// The trailer's length points before the start of the file.
    Length {
        claimed: u64,
        file_len: u64,
    },
    /// A list, set, map or binary claims more than the footer holds.
    Oversized {
        what: &'static str,
        claimed: u64,
        remaining: u64,
        at: usize,
    },
    Truncated {
        at: usize,
    },
    BadType {
        code: u8,
        at: usize,
    },
    TooDeep {
        at: usize,
    },
    /// A field polars reads by its id whose header declares another type.
    FieldType {
        field: &'static str,
        found: u8,
        expected: u8,
        at: usize,
    },
    /// A row count, value count or size that is negative or beyond what the file can hold.
    Count {
        field: &'static str,
        value: i64,
        limit: u64,
        at: usize,
    },
    /// A page header (at file `offset`) refused for one of the reasons above.
    Page {
        offset: u64,
        inner: Box<FooterError>,
    },
    Io(String),
}

impl FooterError {
    /// The same error about the page header at file offset `offset`.
    fn in_page(self, offset: u64) -> Self {
        match self {
            Self::Io(_) => self,
            other => Self::Page {
                offset,
                inner: Box::new(other),
            },
        }
    }
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
                "corrupt footer: a {what} at byte {at} claims {claimed} \
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
            Self::Count {
                field,
                value,
                limit,
                at,
            } => write!(
                f,
                "corrupt footer: `{field}` at byte {at} is {value}, \
                 outside 0..={limit} for a file of this size"
            ),
            Self::FieldType {
                field,
                found,
                expected,
                at,
            } => write!(
                f,
                "corrupt footer: `{field}` at byte {at} has thrift type {found}, \
                 expected {expected}"
            ),
            Self::Page { offset, inner } => {
                let inner = inner.to_string();
                let inner = inner.strip_prefix("corrupt footer: ").unwrap_or(&inner);
                write!(f, "corrupt page header at file byte {offset}: {inner}")
            }
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
    let claimed = u64::from(u32::from_le_bytes(
        trailer[..4].try_into().expect("4 bytes"),
    ));
    if claimed + TRAILER > file_len {
        return Err(FooterError::Length { claimed, file_len });
    }
    let mut footer = vec![0u8; claimed as usize];
    file.seek(SeekFrom::End(-((claimed + TRAILER) as i64)))
        .map_err(io)?;
    file.read_exact(&mut footer).map_err(io)?;
    let chunks = check_metadata(&footer, file_len)?;
    for chunk in &chunks {
        check_pages(file, chunk, file_len)?;
    }
    file.rewind().map_err(io)
}

/// The bytes first read for one page header (tens of bytes without statistics); a longer
/// header is read again in a window 16 times larger, up to `PAGE_HEADER_MAX`.
const PAGE_HEADER_WINDOW: u64 = 4 * 1024;
const PAGE_HEADER_MAX: u64 = 16 * 1024 * 1024;

/// Walks the page headers of one column chunk the way polars' page reader does: from the
/// dictionary page (else the first data page), header after header, until the pages hold
/// the chunk's `num_values` or its bytes end. Each header's sizes and counts are bounded
/// like the footer's (polars reserves a page's validity bitmap from its `num_values`).
fn check_pages(file: &mut File, chunk: &Chunk, file_len: u64) -> Result<(), FooterError> {
    let io = |e: std::io::Error| FooterError::Io(e.to_string());
    let start = chunk.dictionary_offset.unwrap_or(chunk.data_offset);
    let end = start.saturating_add(chunk.compressed).min(file_len);
    let (mut pos, mut seen) = (start, 0u64);
    let mut buf = Vec::new();
    while pos < end && seen < chunk.num_values {
        let mut window = (end - pos).min(PAGE_HEADER_WINDOW);
        let (len, page) = loop {
            buf.resize(window as usize, 0);
            file.seek(SeekFrom::Start(pos)).map_err(io)?;
            file.read_exact(&mut buf).map_err(io)?;
            let mut walker = Walker::new(&buf, file_len);
            match walker.value(STRUCT, Ctx::Page, 0) {
                Ok(()) => break (walker.at as u64, walker.page),
                Err(FooterError::Truncated { .. }) if window < (end - pos).min(PAGE_HEADER_MAX) => {
                    window = (window * 16).min(end - pos).min(PAGE_HEADER_MAX);
                }
                Err(e) => return Err(e.in_page(pos)),
            }
        };
        pos = pos.saturating_add(len).saturating_add(page.compressed);
        seen = seen.saturating_add(page.values);
    }
    Ok(())
}

/// What the footer says of one column chunk's pages.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Chunk {
    num_values: u64,
    compressed: u64,
    data_offset: u64,
    dictionary_offset: Option<u64>,
}

/// What one page header says of its page.
#[derive(Debug, Default, Clone, Copy)]
struct Page {
    compressed: u64,
    values: u64,
}

/// Checks one thrift compact-protocol struct, the `FileMetaData`, in `footer`, the footer
/// of a file of `file_len` bytes, and returns what it says of each column chunk's pages.
fn check_metadata(footer: &[u8], file_len: u64) -> Result<Vec<Chunk>, FooterError> {
    let mut walker = Walker::new(footer, file_len);
    walker.value(STRUCT, Ctx::FileMeta, 0)?;
    Ok(walker.chunks)
}

/// The parquet structs whose counts are checked; everything else is walked generically.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Ctx {
    FileMeta,
    RowGroup,
    ColumnChunk,
    ColumnMeta,
    Page,
    DataPage,
    DictionaryPage,
    DataPageV2,
    Other,
}

/// What polars makes of field `id` of a struct in `ctx`. polars decodes the fields it
/// knows by their id, whatever type the field header declares (and a list's elements by
/// the type it expects, whatever the list header says), so for those the declared types
/// must be the expected ones, or this walk and polars' would read different bytes.
struct Role {
    /// The struct's field name, for messages.
    name: &'static str,
    /// The thrift type polars reads (and, for a list, the type of its elements).
    ty: u8,
    element: Option<u8>,
    /// The context of a struct value, or of a list's struct elements.
    inner: Ctx,
    /// For an integer: its upper bound (it must also be non-negative).
    limit: Option<u64>,
}

fn field_role(ctx: Ctx, id: i16, file_len: u64) -> Option<Role> {
    let counts = file_len.saturating_mul(VALUES_PER_BYTE);
    let role = |name, ty, element, inner, limit| {
        Some(Role {
            name,
            ty,
            element,
            inner,
            limit,
        })
    };
    let list = |name, inner| role(name, LIST, Some(STRUCT), inner, None);
    // An i64 that must lie in 0..=limit.
    let int = |name, limit| role(name, I64, None, Ctx::Other, Some(limit));
    let int32 = |name, limit| role(name, I32, None, Ctx::Other, Some(limit));
    let page = |name, inner| role(name, STRUCT, None, inner, None);
    match (ctx, id) {
        (Ctx::FileMeta, 2) => list("schema", Ctx::Other),
        (Ctx::FileMeta, 3) => int("num_rows", counts),
        (Ctx::FileMeta, 4) => list("row_groups", Ctx::RowGroup),
        (Ctx::FileMeta, 5) => list("key_value_metadata", Ctx::Other),
        (Ctx::FileMeta, 7) => list("column_orders", Ctx::Other),
        (Ctx::RowGroup, 1) => list("columns", Ctx::ColumnChunk),
        (Ctx::RowGroup, 3) => int("num_rows", counts),
        (Ctx::RowGroup, 4) => list("sorting_columns", Ctx::Other),
        (Ctx::ColumnChunk, 3) => role("meta_data", STRUCT, None, Ctx::ColumnMeta, None),
        (Ctx::ColumnMeta, 5) => int("num_values", counts),
        (Ctx::ColumnMeta, 6) => int("total_uncompressed_size", i64::MAX as u64),
        (Ctx::ColumnMeta, 7) => int("total_compressed_size", file_len),
        (Ctx::ColumnMeta, 9) => int("data_page_offset", file_len),
        (Ctx::ColumnMeta, 11) => int("dictionary_page_offset", file_len),
        (Ctx::Page, 2) => int32("uncompressed_page_size", i32::MAX as u64),
        (Ctx::Page, 3) => int32("compressed_page_size", file_len),
        (Ctx::Page, 5) => page("data_page_header", Ctx::DataPage),
        (Ctx::Page, 7) => page("dictionary_page_header", Ctx::DictionaryPage),
        (Ctx::Page, 8) => page("data_page_header_v2", Ctx::DataPageV2),
        (Ctx::DataPage | Ctx::DictionaryPage | Ctx::DataPageV2, 1) => int32("num_values", counts),
        (Ctx::DataPageV2, 2) => int32("num_nulls", counts),
        (Ctx::DataPageV2, 3) => int32("num_rows", counts),
        (Ctx::DataPageV2, 5) => int32("definition_levels_byte_length", file_len),
        (Ctx::DataPageV2, 6) => int32("repetition_levels_byte_length", file_len),
        _ => None,
    }
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
    file_len: u64,
    /// The column chunks met so far, and the page header's figures.
    chunks: Vec<Chunk>,
    page: Page,
}

impl<'a> Walker<'a> {
    fn new(bytes: &'a [u8], file_len: u64) -> Self {
        Self {
            bytes,
            at: 0,
            file_len,
            chunks: Vec::new(),
            page: Page::default(),
        }
    }

    /// Keeps the checked integer `value` of field `id` in `ctx` where the page walk
    /// needs it.
    fn record(&mut self, ctx: Ctx, id: i16, value: u64) {
        let chunk = self.chunks.last_mut();
        match (ctx, id, chunk) {
            (Ctx::ColumnMeta, 5, Some(c)) => c.num_values = value,
            (Ctx::ColumnMeta, 7, Some(c)) => c.compressed = value,
            (Ctx::ColumnMeta, 9, Some(c)) => c.data_offset = value,
            (Ctx::ColumnMeta, 11, Some(c)) => c.dictionary_offset = Some(value),
            (Ctx::Page, 3, _) => self.page.compressed = value,
            (Ctx::DataPage | Ctx::DataPageV2, 1, _) => self.page.values = value,
            _ => {}
        }
    }

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

    /// Skips one value of type `ty` (as it appears in a field or a collection); a struct
    /// is walked as `ctx`, a list's elements too.
    fn value(&mut self, ty: u8, ctx: Ctx, depth: usize) -> Result<(), FooterError> {
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
            LIST | SET => self.collection(ctx, depth),
            MAP => self.map(depth),
            STRUCT => self.fields(ctx, depth),
            code => Err(FooterError::BadType {
                code,
                at: self.at.saturating_sub(1),
            }),
        }
    }

    fn fields(&mut self, ctx: Ctx, depth: usize) -> Result<(), FooterError> {
        let mut id: i16 = 0;
        loop {
            let header = self.byte()?;
            if header == 0 {
                return Ok(());
            }
            id = match header >> 4 {
                0 => zigzag(self.varint()?) as i16,
                delta => id.wrapping_add(i16::from(delta)),
            };
            let ty = header & 0x0f;
            let at = self.at;
            match field_role(ctx, id, self.file_len) {
                None if matches!(ty, BOOL_TRUE | BOOL_FALSE) => {}
                None => self.value(ty, Ctx::Other, depth + 1)?,
                Some(role) if ty != role.ty => {
                    return Err(FooterError::FieldType {
                        field: role.name,
                        found: ty,
                        expected: role.ty,
                        at,
                    });
                }
                Some(Role {
                    name,
                    limit: Some(limit),
                    ..
                }) => {
                    let value = zigzag(self.varint()?);
                    if value < 0 || value as u64 > limit {
                        return Err(FooterError::Count {
                            field: name,
                            value,
                            limit,
                            at,
                        });
                    }
                    self.record(ctx, id, value as u64);
                }
                Some(role) => {
                    if role.inner == Ctx::ColumnMeta {
                        self.chunks.push(Chunk::default());
                    }
                    if let Some(element) = role.element {
                        self.element_type(role.name, element)?;
                    }
                    self.value(ty, role.inner, depth + 1)?
                }
            }
        }
    }

    /// Refuses a list whose header declares elements of another type than `expected`
    /// (an empty list's type is not looked at).
    fn element_type(&self, field: &'static str, expected: u8) -> Result<(), FooterError> {
        let Some(&header) = self.bytes.get(self.at) else {
            return Ok(()); // reading the header reports the truncation
        };
        let found = header & 0x0f;
        if header >> 4 != 0 && found != expected {
            return Err(FooterError::FieldType {
                field,
                found,
                expected,
                at: self.at,
            });
        }
        Ok(())
    }

    fn collection(&mut self, ctx: Ctx, depth: usize) -> Result<(), FooterError> {
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
            self.value(ty, ctx, depth + 1)?;
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
            self.value(types >> 4, Ctx::Other, depth + 1)?;
            self.value(types & 0x0f, Ctx::Other, depth + 1)?;
        }
        Ok(())
    }
}

/// Thrift's zigzag encoding of a signed integer.
fn zigzag(n: u64) -> i64 {
    ((n >> 1) as i64) ^ -((n & 1) as i64)
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

    /// `fields` as a struct in field 1 of the `FileMetaData` (a field polars does not read),
    /// so that their ids mean nothing to the walk.
    fn nested(fields: &[u8]) -> Vec<u8> {
        let mut out = vec![(1 << 4) | STRUCT];
        out.extend_from_slice(fields);
        out.push(0);
        out
    }

    #[test]
    fn a_field_polars_reads_by_id_must_have_its_type() {
        // row_groups (field 4) declared as an i32, and schema (field 2) as a list of i32s:
        // polars would read a list header, or structs, from those bytes.
        let as_i32 = [(4 << 4) | I32, 0x7f, 0];
        assert!(matches!(
            check_metadata(&as_i32, 1 << 20),
            Err(FooterError::FieldType {
                field: "row_groups",
                found: I32,
                expected: LIST,
                ..
            })
        ));
        let mut of_i32 = list_field(3, &[2, 2, 2]);
        of_i32.push(0);
        let err = check_metadata(&of_i32, 1 << 20).unwrap_err();
        assert!(
            matches!(
                err,
                FooterError::FieldType {
                    field: "schema",
                    found: I32,
                    expected: STRUCT,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("`schema`"), "{err}");
    }

    #[test]
    fn a_well_formed_struct_passes() {
        // field 1: i32 7; field 2: list of 16 i32s; field 3: binary "ab"; field 4: bool;
        // field 5: a struct holding a map {1: "x"}; stop.
        let mut m = vec![(1 << 4) | I32, 14];
        m.extend(list_field(16, &[2; 16]));
        m.extend([(1 << 4) | BINARY, 2, b'a', b'b']);
        m.push((1 << 4) | BOOL_TRUE);
        m.extend([
            (1 << 4) | STRUCT,
            (1 << 4) | MAP,
            1,
            (I32 << 4) | BINARY,
            2,
            1,
            b'x',
            0,
        ]);
        m.push(0);
        assert_eq!(check_metadata(&nested(&m), 1 << 20), Ok(vec![]));
    }

    #[test]
    fn an_empty_fastparquet_list_passes() {
        assert_eq!(
            check_metadata(&[(2 << 4) | LIST, 0x00, 0], 1 << 20),
            Ok(vec![])
        );
    }

    #[test]
    fn a_list_claiming_more_than_the_footer_holds_is_refused() {
        let mut m = list_field(5_000_000_000, &[2; 4]);
        m.push(0);
        let err = check_metadata(&nested(&m), 1 << 20).unwrap_err();
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
            check_metadata(&binary, 1 << 20),
            Err(FooterError::Oversized { what: "binary", .. })
        ));
        let map = [(1 << 4) | MAP, 0x7f, (I32 << 4) | I32, 1, 1, 0];
        assert!(matches!(
            check_metadata(&map, 1 << 20),
            Err(FooterError::Oversized { what: "map", .. })
        ));
    }

    #[test]
    fn truncation_depth_and_unknown_types_are_refused() {
        assert_eq!(
            check_metadata(&[(1 << 4) | I32], 1 << 20),
            Err(FooterError::Truncated { at: 1 })
        );
        let deep: Vec<u8> = std::iter::repeat_n((1 << 4) | STRUCT, 200).collect();
        assert!(matches!(
            check_metadata(&deep, 1 << 20),
            Err(FooterError::TooDeep { .. })
        ));
        assert!(matches!(
            check_metadata(&[(1 << 4) | 14, 0], 1 << 20),
            Err(FooterError::BadType { code: 14, .. })
        ));
    }

    #[test]
    fn negative_or_implausible_counts_are_refused() {
        // FileMetaData field 3 (num_rows, i64): zigzag -1 is 1; then a row group list whose
        // RowGroup has num_rows (field 3) of 2^40.
        let negative = [(3 << 4) | I64, 1, 0];
        let err = check_metadata(&negative, 1 << 20).unwrap_err();
        assert!(
            matches!(
                err,
                FooterError::Count {
                    field: "num_rows",
                    value: -1,
                    ..
                }
            ),
            "{err:?}"
        );
        let mut huge = vec![(4 << 4) | LIST, 0x10 | STRUCT, (3 << 4) | I64];
        let mut n = (1u64 << 40) << 1; // zigzag of 2^40
        while n >= 0x80 {
            huge.push((n as u8) | 0x80);
            n >>= 7;
        }
        huge.extend([n as u8, 0, 0]);
        let err = check_metadata(&huge, 1 << 20).unwrap_err();
        assert!(
            matches!(err, FooterError::Count { field: "num_rows", value, .. } if value == 1 << 40),
            "{err:?}"
        );
        assert!(err.to_string().contains("`num_rows`"), "{err}");
        // The same count passes in a file large enough to hold it.
        assert_eq!(check_metadata(&huge, 1 << 40), Ok(vec![]));
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
