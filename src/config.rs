//! Typed, validated configuration for the stores. The binary merges flags, `ML_*`
//! environment variables and scenario files into these structs; the library never
//! reads argv. Secrets are wrapped in [`Secret`] so they cannot be printed by accident.

use serde::{Deserialize, Serialize};
use std::time::Duration;
use url::Url;

use crate::distance::Metric;
use crate::error::ConfigError;

/// A credential. `Debug`/`Display` print `***`; serialisation writes `"***"`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    /// The only way to read the value; grep for it to audit every use.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("***")
    }
}

/// `scheme://host:port/path` with any user:password removed, for messages and reports.
pub fn redact_url(url: &Url) -> String {
    let mut u = url.clone();
    let _ = u.set_password(None);
    let _ = u.set_username("");
    u.set_query(None);
    u.to_string()
}

/// Same as [`redact_url`] for a string that may not parse; never echoes it when unparsable.
pub fn redact_dsn(dsn: &str) -> String {
    match Url::parse(dsn) {
        Ok(u) => redact_url(&u),
        Err(_) => "<unparsable connection string>".to_string(),
    }
}

/// The names errors give configuration fields (the `field` of [`ConfigError::Invalid`]).
/// The library never names a flag; the binary maps each of these to the flag or
/// variable that sets the field, so its messages name what the user typed.
pub mod field {
    /// The PostgreSQL connection as a whole (none is configured).
    pub const PG: &str = "pg";
    pub const PG_DSN: &str = "pg.dsn";
    pub const PG_TABLE: &str = "pg.table";
    pub const PG_INDEX: &str = "pg.index";
    /// The OpenSearch connection as a whole (none is configured).
    pub const OPENSEARCH: &str = "opensearch";
    pub const OPENSEARCH_HOSTS: &str = "opensearch.hosts";
    pub const OPENSEARCH_INDEX: &str = "opensearch.index";
    pub const OPENSEARCH_ENGINE: &str = "opensearch.engine";
    pub const OPENSEARCH_USERNAME: &str = "opensearch.username";
    pub const OPENSEARCH_CA_CERT: &str = "opensearch.ca_cert";
    pub const OPENSEARCH_TENANT_LAYOUT: &str = "opensearch.tenant_layout";
    /// Which stores a command touches.
    pub const BACKEND: &str = "backend";
    /// The vector dimension of both stores.
    pub const DIMENSION: &str = "dimension";
    /// The similarity space of both stores.
    pub const SPACE_TYPE: &str = "space_type";
    /// The migration mode a command starts the adapter in.
    pub const MIGRATION_MODE: &str = "migration_mode";
    pub const INGEST_BATCH_SIZE: &str = "ingest.batch_size";
    pub const SERVE_LISTEN: &str = "serve.listen";
    pub const SERVE_MAX_K: &str = "serve.max_k";
    pub const SERVE_MAX_BODY_BYTES: &str = "serve.max_body_bytes";
    pub const SERVE_TENANTS: &str = "serve.tenants";
    pub const SERVE_REQUEST_TIMEOUT: &str = "serve.request_timeout";
    pub const SERVE_MAX_CONCURRENCY: &str = "serve.max_concurrency";
    /// The admin token given as a value (not a file).
    pub const ADMIN_TOKEN: &str = "admin_token";
    pub const ADMIN_TOKEN_FILE: &str = "admin_token_file";
    pub const HTTP_LOAD_TARGET: &str = "http_load.target";
    pub const HTTP_LOAD_SCENARIO: &str = "http_load.scenario";
    pub const HTTP_LOAD_K: &str = "http_load.k";
    pub const HTTP_LOAD_USERS: &str = "http_load.users";
    pub const HTTP_LOAD_HATCH_RATE: &str = "http_load.hatch_rate";
    pub const HTTP_LOAD_RUN_TIME: &str = "http_load.run_time";
    pub const HTTP_LOAD_TEST_PLAN: &str = "http_load.test_plan";
    pub const HTTP_LOAD_ALLOW_REMOTE: &str = "http_load.allow_remote";
    pub const DRILL_TARGET: &str = "drill.target";
    pub const DRILL_ALLOW_REMOTE: &str = "drill.allow_remote";
}

/// Default index / table name, as in the seed.
pub const DEFAULT_INDEX: &str = "ml_embeddings";
pub const DEFAULT_DIMENSION: usize = 384;

/// Checks a name used as an SQL identifier or index name: `[a-z_][a-z0-9_]*`, ≤ 63 bytes.
pub fn validate_identifier(field: &str, name: &str) -> Result<(), ConfigError> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(ConfigError::invalid(
            field,
            format!("{name:?} must match [a-z_][a-z0-9_]* and be at most 63 bytes"),
        ))
    }
}

/// Suffixes shadowbench appends to the pgvector table name for its companion objects.
/// PostgreSQL truncates identifiers past 63 bytes, so the table name must leave room
/// for the longest, or two objects would silently share one name.
pub const PG_NAME_SUFFIXES: [&str; 4] = ["_embedding_idx", "_outbox", "_parked", "_vseq"];

/// Longest pgvector table name: 63 bytes less the longest companion suffix.
pub const MAX_PG_TABLE_BYTES: usize = 63 - 14;

/// PostgreSQL key words that cannot name a table without quoting (the "reserved" and
/// "reserved (can be function or type)" columns of the SQL key words appendix).
#[rustfmt::skip]
const PG_RESERVED: &[&str] = &[
    "all", "analyse", "analyze", "and", "any", "array", "as", "asc", "asymmetric",
    "authorization", "binary", "both", "case", "cast", "check", "collate", "collation",
    "column", "concurrently", "constraint", "create", "cross", "current_catalog",
    "current_date", "current_role", "current_schema", "current_time", "current_timestamp",
    "current_user", "default", "deferrable", "desc", "distinct", "do", "else", "end",
    "except", "false", "fetch", "for", "foreign", "freeze", "from", "full", "grant",
    "group", "having", "ilike", "in", "initially", "inner", "intersect", "into", "is",
    "isnull", "join", "lateral", "leading", "left", "like", "limit", "localtime",
    "localtimestamp", "natural", "not", "notnull", "null", "offset", "on", "only", "or",
    "order", "outer", "overlaps", "placing", "primary", "references", "returning", "right",
    "select", "session_user", "similar", "some", "symmetric", "system_user", "table",
    "tablesample", "then", "to", "trailing", "true", "union", "unique", "user", "using",
    "variadic", "verbose", "when", "where", "window", "with",
];

/// Checks the pgvector table name: an identifier, not a reserved word, and short
/// enough that every companion name (`<table>_embedding_idx`, `_outbox`, ...) stays
/// within PostgreSQL's 63-byte limit.
pub fn validate_pg_table(field: &str, name: &str) -> Result<(), ConfigError> {
    validate_identifier(field, name)?;
    if name.len() > MAX_PG_TABLE_BYTES {
        return Err(ConfigError::invalid(
            field,
            format!(
                "{name:?} is {} bytes; a pgvector table name may have at most {MAX_PG_TABLE_BYTES}, \
                 so that {:?} stays within PostgreSQL's 63-byte identifier limit",
                name.len(),
                format!("{name}_embedding_idx")
            ),
        ));
    }
    if PG_RESERVED.binary_search(&name).is_ok() {
        return Err(ConfigError::invalid(
            field,
            format!("{name:?} is a reserved word in PostgreSQL; choose another table name"),
        ));
    }
    Ok(())
}

/// How tenants map onto OpenSearch indices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum TenantLayout {
    /// One shared index; tenants are separated by a `tenant_id` filter.
    #[default]
    Shared,
    /// One index per tenant, `<index>_<tenant>`, created from the index template.
    PerTenant,
}

impl std::str::FromStr for TenantLayout {
    type Err = ConfigError;

    /// `shared`, or `per-tenant` (also `per_tenant`).
    fn from_str(s: &str) -> Result<Self, ConfigError> {
        match s {
            "shared" => Ok(TenantLayout::Shared),
            "per-tenant" | "per_tenant" => Ok(TenantLayout::PerTenant),
            other => Err(ConfigError::invalid(
                field::OPENSEARCH_TENANT_LAYOUT,
                format!("{other:?} is not one of shared, per-tenant"),
            )),
        }
    }
}

/// Vector index method for pgvector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum PgIndex {
    Hnsw { m: u32, ef_construction: u32 },
    IvfFlat { lists: u32 },
}

/// The pgvector index method alone, before its parameters are known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PgIndexMethod {
    Hnsw,
    IvfFlat,
}

impl PgIndexMethod {
    /// The index with its parameters: `m` and `ef_construction` for HNSW, `lists` for
    /// IVFFlat; the others are ignored.
    pub fn with(self, m: u32, ef_construction: u32, lists: u32) -> PgIndex {
        match self {
            PgIndexMethod::Hnsw => PgIndex::Hnsw { m, ef_construction },
            PgIndexMethod::IvfFlat => PgIndex::IvfFlat { lists },
        }
    }
}

impl std::str::FromStr for PgIndexMethod {
    type Err = ConfigError;

    /// `hnsw` or `ivfflat`.
    fn from_str(s: &str) -> Result<Self, ConfigError> {
        match s {
            "hnsw" => Ok(PgIndexMethod::Hnsw),
            "ivfflat" => Ok(PgIndexMethod::IvfFlat),
            other => Err(ConfigError::invalid(
                field::PG_INDEX,
                format!("{other:?} is not one of hnsw, ivfflat"),
            )),
        }
    }
}

impl Default for PgIndex {
    fn default() -> Self {
        // pgvector's own defaults.
        PgIndex::Hnsw {
            m: 16,
            ef_construction: 64,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct PgConfig {
    /// Full connection string; contains the password, hence a [`Secret`].
    pub dsn: Secret,
    pub table: String,
    pub dimension: usize,
    pub metric: Metric,
    pub index: PgIndex,
    /// `hnsw.ef_search`, set per connection at connect time so it never leaks.
    pub ef_search: u32,
    /// `ivfflat.probes` when the index is IVFFlat.
    pub probes: u32,
    pub pool_size: u32,
    pub statement_timeout: Duration,
}

impl PgConfig {
    pub fn new(dsn: impl Into<String>) -> Self {
        Self {
            dsn: Secret::new(dsn),
            table: DEFAULT_INDEX.to_string(),
            dimension: DEFAULT_DIMENSION,
            metric: Metric::Cosine,
            index: PgIndex::default(),
            ef_search: 100,
            probes: 10,
            pool_size: 16,
            statement_timeout: Duration::from_secs(10),
        }
    }

    /// Host and database without credentials.
    pub fn display_target(&self) -> String {
        redact_dsn(self.dsn.expose())
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        validate_pg_table(field::PG_TABLE, &self.table)?;
        if Url::parse(self.dsn.expose()).is_err() {
            return Err(ConfigError::invalid(
                field::PG_DSN,
                "not a valid postgres:// URL (value not shown)",
            ));
        }
        validate_dimension(self.dimension)?;
        Ok(())
    }
}

pub fn validate_dimension(dimension: usize) -> Result<(), ConfigError> {
    // pgvector's HNSW index supports up to 2000 dimensions; OpenSearch Lucene up to 16000.
    if dimension == 0 || dimension > 2000 {
        return Err(ConfigError::invalid(
            field::DIMENSION,
            format!("{dimension} is outside 1..=2000"),
        ));
    }
    Ok(())
}

#[derive(Debug, Clone, Serialize)]
pub struct OpenSearchConfig {
    /// Node URLs without credentials (user info is moved to `username`/`password`).
    pub hosts: Vec<Url>,
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub verify_certs: bool,
    /// A PEM file of CA certificates to trust for the nodes' TLS certificates, beside the
    /// system's (a cluster with its own CA, or a self-signed demo certificate).
    pub ca_cert: Option<std::path::PathBuf>,
    pub index: String,
    pub dimension: usize,
    pub tenant_layout: TenantLayout,
    /// `lucene` is the only engine whose library ships on Maven Central.
    pub engine: String,
    pub metric: Metric,
    pub m: u32,
    pub ef_construction: u32,
    /// Lucene's effective ef_search is max(k, this); sent as `method_parameters.ef_search`.
    pub ef_search: u32,
    pub shards: u32,
    pub replicas: u32,
    pub refresh_interval: String,
    pub timeout: Duration,
}

impl OpenSearchConfig {
    pub fn new(hosts: Vec<Url>) -> Self {
        Self {
            hosts,
            username: None,
            password: None,
            verify_certs: true,
            ca_cert: None,
            index: DEFAULT_INDEX.to_string(),
            dimension: DEFAULT_DIMENSION,
            tenant_layout: TenantLayout::Shared,
            engine: "lucene".to_string(),
            metric: Metric::Cosine,
            m: 16,
            ef_construction: 100,
            ef_search: 100,
            shards: 1,
            replicas: 0,
            refresh_interval: "1s".to_string(),
            timeout: Duration::from_secs(10),
        }
    }

    pub fn display_target(&self) -> String {
        self.hosts
            .iter()
            .map(redact_url)
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.hosts.is_empty() {
            return Err(ConfigError::invalid(
                field::OPENSEARCH_HOSTS,
                "at least one URL is required",
            ));
        }
        validate_identifier(field::OPENSEARCH_INDEX, &self.index)?;
        validate_dimension(self.dimension)?;
        if !matches!(self.engine.as_str(), "lucene" | "faiss" | "nmslib") {
            return Err(ConfigError::invalid(
                field::OPENSEARCH_ENGINE,
                format!("{:?} is not one of lucene, faiss, nmslib", self.engine),
            ));
        }
        if self.password.is_some() && self.username.is_none() {
            return Err(ConfigError::invalid(
                field::OPENSEARCH_USERNAME,
                "a password was given without a username",
            ));
        }
        Ok(())
    }
}

/// Hosts without credentials, plus the (username, password) found in any of them.
pub type ParsedHosts = (Vec<Url>, Option<(String, Secret)>);

/// Parses comma-separated host lists (`ML_OPENSEARCH_HOSTS`-style); errors name `field`.
/// Credentials embedded in a URL are taken out and returned separately so they never
/// reach a log line.
pub fn parse_hosts(field: &str, list: &str) -> Result<ParsedHosts, ConfigError> {
    let mut hosts = Vec::new();
    let mut creds = None;
    for (i, raw) in list
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .enumerate()
    {
        let with_scheme = if raw.contains("://") {
            raw.to_string()
        } else {
            format!("http://{raw}")
        };
        let mut url = Url::parse(&with_scheme).map_err(|e| {
            ConfigError::invalid(field, format!("host #{} is not a URL: {e}", i + 1))
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(ConfigError::invalid(
                field,
                format!("host #{} must use http or https", i + 1),
            ));
        }
        if !url.username().is_empty() {
            let user = url.username().to_string();
            let pass = Secret::new(url.password().unwrap_or_default());
            creds = Some((user, pass));
            let _ = url.set_username("");
            let _ = url.set_password(None);
        }
        hosts.push(url);
    }
    if hosts.is_empty() {
        return Err(ConfigError::invalid(field, "no host given"));
    }
    Ok((hosts, creds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s} {s:?}"), "*** ***");
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"***\"");
        let mut cfg = PgConfig::new("postgres://u:hunter2@db:5432/x");
        cfg.table = "t".into();
        assert!(!format!("{cfg:?}").contains("hunter2"));
        assert!(!cfg.display_target().contains("hunter2"));
    }

    #[test]
    fn hosts_lose_their_credentials() {
        let (hosts, creds) =
            parse_hosts(field::OPENSEARCH_HOSTS, "https://admin:pw@a:9200, b:9201").unwrap();
        assert_eq!(hosts[0].as_str(), "https://a:9200/");
        assert_eq!(hosts[1].as_str(), "http://b:9201/");
        let (u, p) = creds.unwrap();
        assert_eq!((u.as_str(), p.expose()), ("admin", "pw"));
        assert!(parse_hosts(field::OPENSEARCH_HOSTS, "ftp://x").is_err());
    }

    #[test]
    fn identifiers_are_checked() {
        assert!(validate_identifier("x", "ml_embeddings").is_ok());
        assert!(validate_identifier("x", "bad;drop").is_err());
        assert!(validate_identifier("x", "Upper").is_err());
    }

    #[test]
    fn pg_table_names_leave_room_for_every_suffix_and_avoid_reserved_words() {
        let longest = PG_NAME_SUFFIXES.iter().map(|s| s.len()).max().unwrap();
        assert_eq!(MAX_PG_TABLE_BYTES, 63 - longest);
        assert!(validate_pg_table(field::PG_TABLE, &"a".repeat(MAX_PG_TABLE_BYTES)).is_ok());
        let e =
            validate_pg_table(field::PG_TABLE, &"a".repeat(MAX_PG_TABLE_BYTES + 1)).unwrap_err();
        assert!(e.to_string().starts_with("pg.table: "), "{e}");
        assert!(e.to_string().contains("63-byte"), "{e}");
        let e = validate_pg_table(field::PG_TABLE, "user").unwrap_err();
        assert!(e.to_string().contains("reserved"), "{e}");
        assert!(validate_pg_table(field::PG_TABLE, "users").is_ok());
        assert!(
            PG_RESERVED.windows(2).all(|w| w[0] < w[1]),
            "binary search needs order"
        );
    }

    #[test]
    fn tenant_layouts_and_index_methods_parse_from_their_flag_spellings() {
        assert_eq!(
            "shared".parse::<TenantLayout>().unwrap(),
            TenantLayout::Shared
        );
        for s in ["per-tenant", "per_tenant"] {
            assert_eq!(s.parse::<TenantLayout>().unwrap(), TenantLayout::PerTenant);
        }
        let e = "Shared".parse::<TenantLayout>().unwrap_err().to_string();
        assert_eq!(
            e,
            "opensearch.tenant_layout: \"Shared\" is not one of shared, per-tenant"
        );
        let hnsw = "hnsw".parse::<PgIndexMethod>().unwrap();
        assert_eq!(
            hnsw.with(16, 64, 100),
            PgIndex::Hnsw {
                m: 16,
                ef_construction: 64
            }
        );
        let ivf = "ivfflat".parse::<PgIndexMethod>().unwrap();
        assert_eq!(ivf.with(16, 64, 100), PgIndex::IvfFlat { lists: 100 });
        let e = "ivf".parse::<PgIndexMethod>().unwrap_err().to_string();
        assert_eq!(e, "pg.index: \"ivf\" is not one of hnsw, ivfflat");
    }
}
