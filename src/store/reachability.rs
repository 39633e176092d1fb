//! Fail fast while PostgreSQL is unreachable.
//!
//! sqlx's pool retries a refused connection until its acquire timeout (10 s here), so with
//! the server stopped every call would hang that long and then report only "timed out".
//! [`Reachability`] watches the calls instead:
//! - a call that fails with a connection or timeout error, or that has waited longer than
//!   [`WATCH_AFTER`], probes the server's port (one TCP or Unix-socket connect);
//! - when the probe fails the store is marked down, and every call still waiting is
//!   released at once with a connection error;
//! - while it is down, each new call probes first and fails at once if the port is still
//!   shut; the first probe that connects clears the mark.
//!
//! Probes are single-flight and their answer is reused for [`PROBE_REUSE`], so however
//! many calls wait, PostgreSQL sees at most a few connects a second.

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::{Mutex, watch};
use tokio::time::Instant;

use crate::error::{ErrorClass, StoreError};

/// How long a call may wait before the port is probed.
pub const WATCH_AFTER: Duration = Duration::from_secs(1);
/// How long one probe may take before the port counts as shut.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a probe's answer is reused.
pub const PROBE_REUSE: Duration = Duration::from_millis(500);

const BACKEND: &str = "pgvector";

/// Where PostgreSQL listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    Tcp {
        host: String,
        port: u16,
    },
    /// The socket file, `{dir}/.s.PGSQL.{port}`.
    Unix(PathBuf),
}

impl Endpoint {
    /// From the connect options' host, port and socket directory.
    pub fn new(host: &str, port: u16, socket_dir: Option<&PathBuf>) -> Self {
        match socket_dir {
            Some(dir) => Endpoint::Unix(dir.join(format!(".s.PGSQL.{port}"))),
            None => Endpoint::Tcp {
                host: host.to_string(),
                port,
            },
        }
    }

    async fn connect(&self) -> std::io::Result<()> {
        match self {
            Endpoint::Tcp { host, port } => {
                tokio::net::TcpStream::connect((host.as_str(), *port)).await?;
            }
            #[cfg(unix)]
            Endpoint::Unix(path) => {
                tokio::net::UnixStream::connect(path).await?;
            }
            #[cfg(not(unix))]
            Endpoint::Unix(_) => {}
        }
        Ok(())
    }
}

/// The last probe: when, and why it failed (`None`: it connected).
struct Probe {
    at: Instant,
    failure: Option<String>,
}

pub struct Reachability {
    endpoint: Endpoint,
    /// Shown in errors: host and database, no credentials.
    target: String,
    down: watch::Sender<bool>,
    last: Mutex<Option<Probe>>,
}

impl Reachability {
    pub fn new(endpoint: Endpoint, target: String) -> Self {
        Self {
            endpoint,
            target,
            down: watch::Sender::new(false),
            last: Mutex::new(None),
        }
    }

    /// True while the last probe found the port shut.
    pub fn is_down(&self) -> bool {
        *self.down.borrow()
    }

    fn unreachable(&self, why: &str) -> StoreError {
        StoreError::Unreachable {
            backend: BACKEND,
            target: self.target.clone(),
            detail: format!("PostgreSQL is not accepting connections ({why})"),
        }
    }

    /// Probes the port (or reuses an answer younger than [`PROBE_REUSE`]); marks the
    /// store down or up by the answer. Returns why it failed.
    async fn probe(&self) -> Option<String> {
        let mut last = self.last.lock().await;
        if let Some(p) = last.as_ref()
            && p.at.elapsed() < PROBE_REUSE
        {
            return p.failure.clone();
        }
        let failure = match tokio::time::timeout(PROBE_TIMEOUT, self.endpoint.connect()).await {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(format!("probe: {e}")),
            Err(_) => Some(format!(
                "probe: no connection within {} ms",
                PROBE_TIMEOUT.as_millis()
            )),
        };
        self.down.send_replace(failure.is_some());
        *last = Some(Probe {
            at: Instant::now(),
            failure: failure.clone(),
        });
        failure
    }

    /// Runs `call`, failing it fast when PostgreSQL is or goes unreachable.
    pub async fn guard<T>(
        &self,
        call: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        if self.is_down()
            && let Some(why) = self.probe().await
        {
            return Err(self.unreachable(&why));
        }
        let mut down = self.down.subscribe();
        let watchdog = async {
            tokio::time::sleep(WATCH_AFTER).await;
            loop {
                if let Some(why) = self.probe().await {
                    return why;
                }
                tokio::time::sleep(PROBE_REUSE).await;
            }
        };
        tokio::select! {
            r = call => {
                if let Err(e) = &r
                    && matches!(e.class(), ErrorClass::Connection | ErrorClass::Timeout)
                    && let Some(why) = self.probe().await
                {
                    return Err(self.unreachable(&why));
                }
                r
            }
            _ = async {
                // The `Ref` it returns is not `Send`: dropped here, before any await.
                let _ = down.wait_for(|d| *d).await;
            } => Err(self.unreachable("another call's probe failed")),
            why = watchdog => Err(self.unreachable(&why)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A port that nothing listens on: bound, then closed.
    fn closed_port() -> u16 {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    }

    fn at(port: u16) -> Reachability {
        Reachability::new(
            Endpoint::new("127.0.0.1", port, None),
            format!("127.0.0.1:{port}"),
        )
    }

    #[tokio::test]
    async fn a_call_that_waits_on_a_shut_port_is_released_by_the_probe() {
        let r = at(closed_port());
        let t = std::time::Instant::now();
        let out: Result<(), _> = r
            .guard(async {
                tokio::time::sleep(Duration::from_secs(30)).await;
                Ok(())
            })
            .await;
        let err = out.unwrap_err();
        assert_eq!(err.class(), ErrorClass::Connection, "{err}");
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
        assert!(r.is_down());
        // While down, a new call fails without running.
        let ran = std::sync::atomic::AtomicBool::new(false);
        let out: Result<(), _> = r
            .guard(async {
                ran.store(true, std::sync::atomic::Ordering::SeqCst);
                Ok(())
            })
            .await;
        assert!(out.is_err());
        assert!(!ran.load(std::sync::atomic::Ordering::SeqCst));
    }

    #[tokio::test]
    async fn a_listening_port_clears_the_mark_and_calls_run() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let r = at(l.local_addr().unwrap().port());
        r.down.send_replace(true);
        let out = r.guard(async { Ok::<_, StoreError>(7) }).await;
        assert_eq!(out.unwrap(), 7);
        assert!(!r.is_down());
        // A backend error is the backend's answer, not an outage: no probe verdict.
        let out: Result<(), _> = r
            .guard(async { Err(StoreError::backend(BACKEND, "SQL error 42601")) })
            .await;
        assert_eq!(out.unwrap_err().class(), ErrorClass::Backend);
    }

    #[tokio::test]
    async fn a_connection_error_on_a_shut_port_says_so() {
        let r = at(closed_port());
        let out: Result<(), _> = r
            .guard(async {
                Err(StoreError::Timeout {
                    backend: BACKEND,
                    detail: "no pooled connection became available".into(),
                })
            })
            .await;
        let msg = out.unwrap_err().to_string();
        assert!(msg.contains("not accepting connections"), "{msg}");
        assert!(r.is_down());
    }
}
