//! Writes a run's report directory: `report.json`, `report.md`, `report.html` and
//! `plots/*.png`, naming the file in every error.

use std::path::{Path, PathBuf};

use thiserror::Error;

use super::{Report, html, json, markdown, plots};
use crate::gate::Verdict;

/// Why a report file could not be produced; every variant names the file.
#[derive(Debug, Error)]
pub enum ReportError {
    #[error("{}: cannot create directory: {source}", path.display())]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: cannot write: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("plot {name}: cannot render: {message}")]
    Plot { name: &'static str, message: String },
    #[error("{}: cannot write samples: {message}", path.display())]
    Samples { path: PathBuf, message: String },
}

/// What [`write_all`] writes besides `report.json` and `report.md`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteOptions {
    /// `plots/*.png`, embedded in the HTML too.
    pub plots: bool,
    /// `report.html`.
    pub html: bool,
}

impl Default for WriteOptions {
    fn default() -> Self {
        Self {
            plots: true,
            html: true,
        }
    }
}

pub const MARKDOWN_FILE: &str = "report.md";
pub const HTML_FILE: &str = "report.html";
pub const PLOTS_DIR: &str = "plots";

/// Writes the report files into `dir` (created if missing) and returns their paths in
/// the order written. `samples.parquet` is not among them: it is streamed during the run
/// by [`super::samples_sink::SampleSink`].
pub fn write_all(
    report: &Report,
    verdict: Option<&Verdict>,
    dir: &Path,
    opts: WriteOptions,
) -> Result<Vec<PathBuf>, ReportError> {
    create_dir(dir)?;
    let mut written = Vec::new();
    let mut text = json::to_string(report);
    text.push('\n');
    written.push(write_file(&dir.join(json::FILE_NAME), text.as_bytes())?);
    written.push(write_file(
        &dir.join(MARKDOWN_FILE),
        markdown::render(report, verdict).as_bytes(),
    )?);
    let rendered = if opts.plots {
        plots::render_all(report)?
    } else {
        Vec::new()
    };
    if opts.html {
        written.push(write_file(
            &dir.join(HTML_FILE),
            html::render(report, verdict, &rendered).as_bytes(),
        )?);
    }
    if !rendered.is_empty() {
        let plot_dir = dir.join(PLOTS_DIR);
        create_dir(&plot_dir)?;
        for p in &rendered {
            written.push(write_file(
                &plot_dir.join(format!("{}.png", p.name)),
                &p.png,
            )?);
        }
    }
    Ok(written)
}

fn create_dir(path: &Path) -> Result<(), ReportError> {
    std::fs::create_dir_all(path).map_err(|source| ReportError::CreateDir {
        path: path.to_path_buf(),
        source,
    })
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<PathBuf, ReportError> {
    std::fs::write(path, bytes).map_err(|source| ReportError::Write {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(path.to_path_buf())
}

impl From<ReportError> for crate::error::Error {
    fn from(e: ReportError) -> Self {
        crate::error::Error::failed(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::fixture::{sample_report, sample_verdict};

    #[test]
    fn write_all_writes_every_file_and_lists_it() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("reports/run-1");
        let paths = write_all(
            &sample_report(),
            Some(&sample_verdict()),
            &out,
            WriteOptions::default(),
        )
        .unwrap();
        let names: Vec<String> = paths
            .iter()
            .map(|p| p.strip_prefix(&out).unwrap().display().to_string())
            .collect();
        assert_eq!(
            names,
            [
                "report.json",
                "report.md",
                "report.html",
                "plots/latency_spectrum.png",
                "plots/timeline.png",
                "plots/quality.png"
            ]
        );
        for p in &paths {
            assert!(std::fs::metadata(p).unwrap().len() > 100, "{}", p.display());
        }
        let back = json::read(&out.join("report.json")).unwrap();
        assert_eq!(back, sample_report());
    }

    #[test]
    fn an_unwritable_directory_is_named_in_the_error() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("file");
        std::fs::write(&blocker, "x").unwrap();
        let err = write_all(
            &sample_report(),
            None,
            &blocker.join("sub"),
            WriteOptions::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("file/sub: cannot create directory"), "{err}");
    }
}
