//! Migration modes: which store serves reads and which stores receive writes.

use serde::{Deserialize, Serialize};

use crate::error::ConfigError;

/// Where the migration stands. Parsed from `ML_MIGRATION_MODE`, `--mode` or a scenario:
/// `pgvector`, `dual_write`, `shadow_read`, `read_split(10)` (percent, may be fractional),
/// `opensearch`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MigrationMode {
    /// pgvector only, for reads and writes.
    Pgvector,
    /// Writes go to both stores; reads come from pgvector.
    DualWrite,
    /// Writes go to both; reads are served by pgvector and mirrored to OpenSearch
    /// off the request path for comparison.
    ShadowRead,
    /// Writes go to both; this percentage of reads is served by OpenSearch, chosen
    /// deterministically per query key, with fallback to pgvector.
    ReadSplit { percent: f64 },
    /// Reads are served by OpenSearch (fallback to pgvector). Writes still go to both,
    /// pgvector first, so a rollback to `pgvector` loses nothing.
    Opensearch,
}

impl std::str::FromStr for MigrationMode {
    type Err = ConfigError;

    /// [`MigrationMode::parse`] for the `migration_mode` field.
    fn from_str(s: &str) -> Result<Self, ConfigError> {
        Self::parse(crate::config::field::MIGRATION_MODE, s)
    }
}

impl MigrationMode {
    /// Any case, `-` for `_`; `read_split` takes its percentage as `(P)`, `:P`, `=P` or
    /// `P%`. Errors name `field`.
    pub fn parse(field: &str, s: &str) -> Result<Self, ConfigError> {
        let t = s.trim().to_ascii_lowercase().replace('-', "_");
        let mode = match t.as_str() {
            "pgvector" | "pgvector_only" => MigrationMode::Pgvector,
            "dual_write" => MigrationMode::DualWrite,
            "shadow_read" | "shadow_reads" | "shadow" => MigrationMode::ShadowRead,
            "opensearch" | "opensearch_only" => MigrationMode::Opensearch,
            _ => {
                let inner = t
                    .strip_prefix("read_split")
                    .map(|r| r.trim_matches(|c| c == '(' || c == ')' || c == ':' || c == '=' || c == '%'))
                    .ok_or_else(|| {
                        ConfigError::invalid(
                            field,
                            format!(
                                "{s:?} is not one of pgvector, dual_write, shadow_read, read_split(P), opensearch"
                            ),
                        )
                    })?;
                let percent: f64 = inner.trim_end_matches('%').parse().map_err(|_| {
                    ConfigError::invalid(
                        field,
                        format!("{s:?}: read_split needs a percentage, e.g. read_split(10)"),
                    )
                })?;
                if !(0.0..=100.0).contains(&percent) {
                    return Err(ConfigError::invalid(
                        field,
                        format!("{s:?}: percentage must be within 0..=100"),
                    ));
                }
                MigrationMode::ReadSplit { percent }
            }
        };
        Ok(mode)
    }

    /// Whether writes must also reach OpenSearch.
    pub fn writes_opensearch(self) -> bool {
        !matches!(self, MigrationMode::Pgvector)
    }

    pub fn needs_opensearch(self) -> bool {
        self.writes_opensearch()
    }

    /// Whether any read is sent to OpenSearch (served or mirrored).
    pub fn reads_opensearch(self) -> bool {
        matches!(
            self,
            MigrationMode::ShadowRead | MigrationMode::ReadSplit { .. } | MigrationMode::Opensearch
        )
    }
}

impl std::fmt::Display for MigrationMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MigrationMode::Pgvector => f.write_str("pgvector"),
            MigrationMode::DualWrite => f.write_str("dual_write"),
            MigrationMode::ShadowRead => f.write_str("shadow_read"),
            MigrationMode::ReadSplit { percent } => write!(f, "read_split({percent})"),
            MigrationMode::Opensearch => f.write_str("opensearch"),
        }
    }
}

/// FNV-1a: stable across processes and versions, unlike `std`'s randomised hasher.
pub fn stable_hash(bytes: impl IntoIterator<Item = u8>) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// True when a query with this key belongs to the OpenSearch share of a read split.
pub fn routes_to_opensearch(key_hash: u64, percent: f64) -> bool {
    // 10 000 buckets allow splits down to 0.01 %.
    ((key_hash % 10_000) as f64) < percent * 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_mode_and_names_the_field_on_error() {
        assert_eq!(
            MigrationMode::parse("m", "dual_write").unwrap(),
            MigrationMode::DualWrite
        );
        assert_eq!(
            MigrationMode::parse("m", "shadow-read").unwrap(),
            MigrationMode::ShadowRead
        );
        assert_eq!(
            MigrationMode::parse("m", "read_split(12.5)").unwrap(),
            MigrationMode::ReadSplit { percent: 12.5 }
        );
        assert_eq!(
            MigrationMode::parse("m", "read_split:10").unwrap(),
            MigrationMode::ReadSplit { percent: 10.0 }
        );
        let err = "sideways".parse::<MigrationMode>().unwrap_err().to_string();
        assert!(err.starts_with("migration_mode: \"sideways\""), "{err}");
        assert!(MigrationMode::parse("m", "read_split(150)").is_err());
        for m in [
            "pgvector",
            "dual_write",
            "shadow_read",
            "read_split(5)",
            "opensearch",
        ] {
            assert_eq!(MigrationMode::parse("m", m).unwrap().to_string(), m);
        }
    }

    #[test]
    fn read_split_share_is_close_to_the_percentage_and_sticky() {
        let n = 20_000u64;
        let hits = (0..n)
            .filter(|i| routes_to_opensearch(stable_hash(i.to_le_bytes()), 10.0))
            .count() as f64;
        assert!((hits / n as f64 - 0.10).abs() < 0.01, "{hits}");
        let k = stable_hash(*b"tenant-a");
        assert_eq!(routes_to_opensearch(k, 37.0), routes_to_opensearch(k, 37.0));
        assert!(!routes_to_opensearch(k, 0.0));
        assert!(routes_to_opensearch(k, 100.0));
    }
}
