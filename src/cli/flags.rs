//! Errors as the user sees them: the library names configuration fields, this module
//! names the flags (and variables) that set them, and prints each error once.

use shadowbench::config::field;
use shadowbench::error::{ConfigError, Error, Exit};
use shadowbench::serve::capture::CaptureError;

/// Each configuration field the library names, and what sets it on the command line.
const FLAGS: &[(&str, &str)] = &[
    (field::PG, "--pg-dsn / ML_PGVECTOR_DSN / DATABASE_URL"),
    (field::PG_DSN, "ML_PGVECTOR_DSN"),
    (
        field::PG_TABLE,
        "--pg-table (defaults to --embeddings-index)",
    ),
    (field::PG_INDEX, "--pg-index"),
    (field::OPENSEARCH, "--hosts / ML_OPENSEARCH_HOSTS"),
    (field::OPENSEARCH_HOSTS, "--hosts / ML_OPENSEARCH_HOSTS"),
    (field::OPENSEARCH_INDEX, "--embeddings-index"),
    (field::OPENSEARCH_ENGINE, "--engine"),
    (field::OPENSEARCH_USERNAME, "--username"),
    (
        field::OPENSEARCH_CA_CERT,
        "--os-ca-cert / ML_OPENSEARCH_CA_CERT",
    ),
    (field::OPENSEARCH_TENANT_LAYOUT, "--tenant-layout"),
    (field::BACKEND, "--backend / ML_VECTOR_BACKEND"),
    (field::DIMENSION, "--vector-dimension"),
    (field::SPACE_TYPE, "--space-type"),
    (field::MIGRATION_MODE, "--mode / ML_MIGRATION_MODE"),
    (field::INGEST_BATCH_SIZE, "--batch-size"),
    // The bind error was once wrapped as a `serve` error; the message keeps that.
    (field::SERVE_LISTEN, "serve: --listen"),
    (field::SERVE_MAX_K, "--max-k"),
    (field::SERVE_MAX_BODY_BYTES, "--max-body-bytes"),
    (field::SERVE_TENANTS, "--tenants"),
    (field::SERVE_REQUEST_TIMEOUT, "--request-timeout-ms"),
    (field::SERVE_MAX_CONCURRENCY, "--max-concurrency"),
    (field::ADMIN_TOKEN, "SHADOWBENCH_ADMIN_TOKEN"),
    (field::ADMIN_TOKEN_FILE, "--admin-token-file"),
    (field::HTTP_LOAD_TARGET, "--target"),
    (field::HTTP_LOAD_SCENARIO, "--scenario"),
    (field::HTTP_LOAD_K, "--k"),
    (field::HTTP_LOAD_USERS, "--users"),
    (field::HTTP_LOAD_HATCH_RATE, "--hatch-rate"),
    (field::HTTP_LOAD_RUN_TIME, "--run-time"),
    (field::HTTP_LOAD_TEST_PLAN, "--test-plan"),
    (field::HTTP_LOAD_ALLOW_REMOTE, "--allow-remote"),
    (field::DRILL_TARGET, "--target"),
    (field::DRILL_ALLOW_REMOTE, "--allow-remote"),
];

/// The flag that sets a configuration field; `None` for names that are not fields
/// (scenario keys, file names).
pub fn flag(field: &str) -> Option<String> {
    FLAGS
        .iter()
        .find(|(f, _)| *f == field)
        .map(|(_, flag)| flag.to_string())
}

/// The error's message with flags in place of configuration fields.
pub fn message(e: Error) -> String {
    match e.rename_fields(flag) {
        // The capture file is named by `--record`; its errors start with the path.
        Error::Failed(source) if source.is::<CaptureError>() => format!("--record {source}"),
        e => e.to_string(),
    }
}

/// Prints a failed command's error, once, and gives its exit code.
pub fn fail(e: Error) -> Exit {
    let exit = e.exit_code();
    eprintln!("error: {}", message(e));
    exit
}

/// A flag value the library's parser refused, as the error it would have given: clap's
/// own message would name the flag but not the variable, and take three lines.
pub fn refused_value(e: &clap::Error) -> Option<String> {
    if e.kind() != clap::error::ErrorKind::ValueValidation {
        return None;
    }
    let source = std::error::Error::source(e)?.downcast_ref::<ConfigError>()?;
    Some(source.clone().rename_fields(flag).to_string())
}

/// Reports a command line clap could not parse and ends the process: a value the
/// library refused as [`fail`] would, everything else (and `--help`) as clap does.
pub fn parse_failed(e: clap::Error) -> Exit {
    match refused_value(&e) {
        Some(m) => {
            eprintln!("error: {m}");
            Exit::Usage
        }
        None => e.exit(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Cli;
    use clap::Parser;

    #[test]
    fn library_fields_come_back_as_the_flags_that_set_them() {
        let e = shadowbench::connect::Backends { pg: None, os: None }
            .pg_config()
            .unwrap_err();
        assert_eq!(
            message(e.into()),
            "--pg-dsn / ML_PGVECTOR_DSN / DATABASE_URL: PostgreSQL connection is required for \
             this command"
        );
        let e = ConfigError::value(field::SERVE_LISTEN, "127.0.0.1:80", "cannot bind: denied");
        assert_eq!(
            message(e.into()),
            "serve: --listen 127.0.0.1:80: cannot bind: denied"
        );
        let e = ConfigError::invalid(field::DIMENSION, "0 is outside 1..=2000");
        let e = Error::Store(shadowbench::error::StoreError::InvalidConfig(e));
        assert_eq!(
            message(e),
            "invalid input: --vector-dimension: 0 is outside 1..=2000"
        );
        // Scenario keys are not configuration fields and stay as they are.
        let e = ConfigError::invalid("load.rate", "must be > 0");
        assert_eq!(message(e.into()), "load.rate: must be > 0");
    }

    #[test]
    fn a_capture_error_names_the_record_flag() {
        let e = CaptureError::Exists {
            path: "/tmp/c.jsonl".into(),
        };
        assert_eq!(
            message(Error::failed(e)),
            "--record /tmp/c.jsonl: the file exists and is not empty; remove it or name a new file"
        );
    }

    #[test]
    fn every_field_names_a_flag_or_variable_once() {
        for (i, (f, flag)) in FLAGS.iter().enumerate() {
            assert!(flag.contains("--") || flag.contains("ML_") || flag.contains("SHADOWBENCH_"));
            assert!(FLAGS[..i].iter().all(|(g, _)| g != f), "{f} twice");
        }
    }

    #[test]
    fn a_refused_flag_value_reads_as_before_the_typed_parsers() {
        let cases = [
            (
                ["--space-type", "hamming", "status"],
                "--space-type: \"hamming\" is not one of cosinesimil, l2, innerproduct",
            ),
            (
                ["--backend", "Mongo", "status"],
                "--backend / ML_VECTOR_BACKEND: \"mongo\" is not one of pgvector, opensearch, both",
            ),
            (
                ["--tenant-layout", "per-index", "status"],
                "--tenant-layout: \"per-index\" is not one of shared, per-tenant",
            ),
        ];
        for (args, want) in cases {
            let e = Cli::try_parse_from(std::iter::once("shadowbench").chain(args)).unwrap_err();
            assert_eq!(refused_value(&e).as_deref(), Some(want), "{args:?}");
        }
        let e = Cli::try_parse_from(["shadowbench", "serve", "--mode", "sideways"]).unwrap_err();
        let m = refused_value(&e).unwrap();
        assert!(
            m.starts_with("--mode / ML_MIGRATION_MODE: \"sideways\""),
            "{m}"
        );
        // Errors of clap's own stay clap's.
        let e = Cli::try_parse_from(["shadowbench", "--timeout-ms", "soon", "status"]).unwrap_err();
        assert_eq!(refused_value(&e), None);
    }
}
