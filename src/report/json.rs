//! `report.json`: the [`Report`] serialised with serde, pretty-printed.

use std::path::{Path, PathBuf};

use super::Report;
use crate::error::Error;

/// File name of the JSON report inside a run's output directory.
pub const FILE_NAME: &str = "report.json";

pub fn to_string(report: &Report) -> String {
    // A Report holds only strings, numbers, maps with string-like keys and options:
    // serialisation cannot fail.
    serde_json::to_string_pretty(report).expect("a Report always serialises")
}

/// Writes `report.json` into `dir`, creating the directory; returns the file's path.
pub fn write(report: &Report, dir: &Path) -> Result<PathBuf, Error> {
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::io(format!("{}: cannot create directory", dir.display()), e))?;
    let path = dir.join(FILE_NAME);
    let mut text = to_string(report);
    text.push('\n');
    std::fs::write(&path, text)
        .map_err(|e| Error::io(format!("{}: cannot write", path.display()), e))?;
    Ok(path)
}

/// Reads a report written by [`write`].
pub fn read(path: &Path) -> Result<Report, Error> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::io(format!("{}: cannot read", path.display()), e))?;
    serde_json::from_str(&text).map_err(|e| {
        Error::Config(crate::error::ConfigError::file(
            path,
            format!("not a shadowbench report: {e}"),
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_written_report_reads_back_equal() {
        let r = super::super::build::sample_report(true);
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("reports/run-1");
        let path = write(&r, &out).unwrap();
        assert_eq!(path, out.join("report.json"));
        assert_eq!(read(&path).unwrap(), r);
    }

    /// The restructure guard: the JSON of a fixed run, built from fixed samples, stays
    /// byte for byte what it was.
    #[test]
    fn a_fixed_run_serialises_byte_for_byte() {
        insta::assert_snapshot!(to_string(&super::super::build::sample_report(true)));
    }

    #[test]
    fn a_file_that_is_not_a_report_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("report.json");
        std::fs::write(&p, "{}").unwrap();
        let err = read(&p).unwrap_err().to_string();
        assert!(
            err.contains("report.json: not a shadowbench report"),
            "{err}"
        );
    }
}
