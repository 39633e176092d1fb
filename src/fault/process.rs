//! Process faults on the local backends `scripts/backends.sh` runs: the same pid files
//! and signals as its `freeze-opensearch` / `thaw-opensearch` / `stop-opensearch`.
//! `SB_BACKENDS_DIR` (printed by `scripts/backends.sh env`) says where they are.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::Target;
use super::toxiproxy::FaultError;

/// How long `backends.sh up` may take to start a killed backend again.
pub const RESTART_TIMEOUT: Duration = Duration::from_secs(300);

fn env_path(name: &str) -> Result<PathBuf, FaultError> {
    std::env::var_os(name)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .ok_or_else(|| {
            FaultError::Process(format!(
                "freeze and kill faults act on the local backends: set {name} (eval \"$(scripts/backends.sh env)\")"
            ))
        })
}

/// The pids to signal for `target`: OpenSearch's JVM; PostgreSQL's postmaster and every
/// backend it forked (freezing only the postmaster would leave open sessions serving).
pub fn pids(target: Target) -> Result<Vec<u32>, FaultError> {
    pids_in(&env_path("SB_BACKENDS_DIR")?, target)
}

fn pids_in(dir: &Path, target: Target) -> Result<Vec<u32>, FaultError> {
    let file = match target {
        Target::Opensearch => dir.join("run/opensearch/opensearch.pid"),
        Target::Pgvector => dir.join("pg/postmaster.pid"),
    };
    let text = std::fs::read_to_string(&file).map_err(|e| {
        FaultError::Process(format!(
            "{}: {e} (is {} running?)",
            file.display(),
            target.as_str()
        ))
    })?;
    let pid: u32 = text
        .lines()
        .next()
        .and_then(|l| l.trim().parse().ok())
        .ok_or_else(|| {
            FaultError::Process(format!("{}: no pid on its first line", file.display()))
        })?;
    if !Path::new(&format!("/proc/{pid}")).exists() {
        return Err(FaultError::Process(format!(
            "{}: pid {pid} is not running",
            file.display()
        )));
    }
    let mut out = vec![pid];
    if target == Target::Pgvector {
        out.extend(children(pid));
    }
    Ok(out)
}

fn children(parent: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/status"))
                .ok()
                .and_then(|s| {
                    s.lines()
                        .find_map(|l| l.strip_prefix("PPid:"))
                        .and_then(|v| v.trim().parse::<u32>().ok())
                })
                == Some(parent)
        })
        .collect()
}

/// Sends `signal` (`STOP`, `CONT`, `KILL`) to every pid, as `kill -SIG` does.
pub fn signal(pids: &[u32], signal: &str) -> Result<(), FaultError> {
    let out = std::process::Command::new("kill")
        .arg(format!("-{signal}"))
        .args(pids.iter().map(u32::to_string))
        .output()
        .map_err(|e| FaultError::Process(format!("kill -{signal}: {e}")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(FaultError::Process(format!(
            "kill -{signal} {pids:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// Starts the killed backend again: `$SB_BACKENDS_SCRIPT up` (idempotent; it starts what
/// is not running and waits until both stores are usable).
pub async fn restart() -> Result<(), FaultError> {
    let script = env_path("SB_BACKENDS_SCRIPT")?;
    let run = tokio::process::Command::new(&script)
        .arg("up")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .output();
    match tokio::time::timeout(RESTART_TIMEOUT, run).await {
        Ok(Ok(out)) if out.status.success() => Ok(()),
        Ok(Ok(out)) => {
            let err = String::from_utf8_lossy(&out.stderr);
            let tail: Vec<&str> = err.lines().rev().take(3).collect();
            Err(FaultError::Process(format!(
                "{} up failed: {}",
                script.display(),
                tail.into_iter().rev().collect::<Vec<_>>().join(" / ")
            )))
        }
        Ok(Err(e)) => Err(FaultError::Process(format!("{}: {e}", script.display()))),
        Err(_) => Err(FaultError::Process(format!(
            "{} up did not finish within {} s",
            script.display(),
            RESTART_TIMEOUT.as_secs()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pid_files_are_read_as_backends_sh_writes_them() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("run/opensearch")).unwrap();
        let me = std::process::id();
        std::fs::write(
            dir.path().join("run/opensearch/opensearch.pid"),
            format!("{me}\n"),
        )
        .unwrap();
        assert_eq!(pids_in(dir.path(), Target::Opensearch).unwrap(), vec![me]);
        std::fs::create_dir_all(dir.path().join("pg")).unwrap();
        std::fs::write(dir.path().join("pg/postmaster.pid"), "4000000000\n/x\n").unwrap();
        let err = pids_in(dir.path(), Target::Pgvector)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("not running") || err.contains("no pid"),
            "{err}"
        );
    }
}
