//! The `[backends]` section: the stores on sides a and b (or side a alone: a
//! single-store run), how writes are routed ([`WriteRoute`]) and the table/index to use
//! instead of the configured one.

use super::WriteRoute;
use super::field::{FieldError, bad};
use super::raw::RawBackends;
use crate::adapter::mode::MigrationMode;
use crate::store::BackendKind;

/// A validated `[backends]`.
pub(super) struct Backends {
    /// Side a, then side b unless the run is single-store.
    pub(super) sides: Vec<BackendKind>,
    /// `backends.mode`; `None` when unset (direct, or a staged scenario's first stage).
    pub(super) route: Option<WriteRoute>,
    pub(super) index: Option<String>,
}

pub(super) fn validate(raw: RawBackends) -> Result<Backends, FieldError> {
    let a = backend("backends.a", raw.a.as_deref(), BackendKind::Pgvector)?;
    let sides = match (&raw.a, &raw.b) {
        // `a` alone: one store measured on its own (phase 1's baseline, pgvector as
        // production runs it today). Neither named: the migration's default pair.
        (Some(_), None) => vec![a],
        _ => vec![
            a,
            backend("backends.b", raw.b.as_deref(), BackendKind::Opensearch)?,
        ],
    };
    let route = raw
        .mode
        .as_deref()
        .map(|m| WriteRoute::parse("backends.mode", m))
        .transpose()?;
    if sides.len() == 1 {
        if let Some(WriteRoute::Adapter(mode)) = route {
            return Err(bad(
                "backends.mode",
                format!(
                    "{mode} routes between pgvector and OpenSearch, and this run has one store (backends.b is not set)"
                ),
            ));
        }
    }
    if let Some(index) = &raw.index {
        crate::config::validate_identifier("backends.index", index).map_err(|e| {
            bad(
                "backends.index",
                e.to_string()
                    .trim_start_matches("backends.index: ")
                    .to_string(),
            )
        })?;
    }
    Ok(Backends {
        sides,
        route,
        index: raw.index,
    })
}

impl WriteRoute {
    /// `direct` or a migration mode's name (`dual_write`, `read_split(10)`, ...).
    pub fn parse(field: &str, s: &str) -> Result<WriteRoute, FieldError> {
        if s == "direct" {
            return Ok(WriteRoute::Direct);
        }
        MigrationMode::parse(field, s)
            .map(WriteRoute::Adapter)
            .map_err(|e| {
                bad(
                    field,
                    format!("{s:?} is not direct or a migration mode ({e})"),
                )
            })
    }
}

fn backend(field: &str, v: Option<&str>, default: BackendKind) -> Result<BackendKind, FieldError> {
    match v {
        None => Ok(default),
        Some("pgvector") => Ok(BackendKind::Pgvector),
        Some("opensearch") => Ok(BackendKind::Opensearch),
        Some("exact") => Ok(BackendKind::Exact),
        Some(other) => Err(bad(
            field,
            format!("{other:?} is not one of pgvector, opensearch, exact"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{MINIMAL, parse};
    use super::*;

    #[test]
    fn a_write_route_is_direct_or_a_mode_and_prints_as_it_was_given() {
        for (text, route) in [
            ("direct", WriteRoute::Direct),
            ("dual_write", WriteRoute::Adapter(MigrationMode::DualWrite)),
            (
                "read_split(10)",
                WriteRoute::Adapter(MigrationMode::ReadSplit { percent: 10.0 }),
            ),
        ] {
            let parsed = WriteRoute::parse("backends.mode", text).unwrap();
            assert_eq!(parsed, route);
            assert_eq!(parsed.to_string(), text);
        }
        let e = WriteRoute::parse("backends.mode", "fanout").unwrap_err();
        assert_eq!(e.field, "backends.mode");
        assert!(
            e.message
                .starts_with("\"fanout\" is not direct or a migration mode (backends.mode: "),
            "{e}"
        );
        let s = parse(&format!("{MINIMAL}\n[backends]\nmode = \"shadow\"")).unwrap();
        assert_eq!(s.mode, WriteRoute::Adapter(MigrationMode::ShadowRead));
        assert_eq!(s.mode.to_string(), "shadow_read");
    }
}
