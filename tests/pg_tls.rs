//! TLS to PostgreSQL against the real server: a loopback endpoint that speaks
//! PostgreSQL's TLS negotiation (it answers the client's SSLRequest with `S`, then
//! terminates TLS with a certificate signed by a CA generated here, and relays the
//! session to the real PostgreSQL) and refuses clients that do not ask for TLS, as a
//! TLS-only server does. What the README promises of the DSN's `sslmode` and
//! `sslrootcert`, checked through `shadowbench status --backend pgvector`:
//! `verify-full` with the CA connects, `verify-full` without it is refused, `verify-ca`
//! with it connects, `disable` is refused by the TLS-only server, and no `sslmode`
//! (sqlx's `prefer`) connects without checking the certificate at all.

mod common;

use std::net::SocketAddr;

use common::tls::{Preamble, ca_file, certificates, tls_endpoint};

/// The real server's address and the DSN through the endpoint at `addr` with `query`.
fn dsns(addr: SocketAddr, query: &str) -> (SocketAddr, String) {
    let mut url = url::Url::parse(&common::pg_dsn()).unwrap();
    let upstream = std::net::ToSocketAddrs::to_socket_addrs(&(
        url.host_str().unwrap(),
        url.port().unwrap_or(5432),
    ))
    .unwrap()
    .next()
    .unwrap();
    url.set_host(Some("127.0.0.1")).unwrap();
    url.set_port(Some(addr.port())).unwrap();
    url.set_query((!query.is_empty()).then_some(query));
    (upstream, url.to_string())
}

fn upstream() -> SocketAddr {
    dsns("127.0.0.1:1".parse().unwrap(), "").0
}

/// `shadowbench status --backend pgvector` with `dsn`, from a blocking thread (the
/// endpoint runs on this test's runtime).
async fn status(dsn: String) -> (Option<i32>, String, String) {
    let mut cmd = common::shadowbench(None);
    cmd.env("ML_PGVECTOR_DSN", &dsn)
        .args(["status", "--backend", "pgvector"]);
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The DSN's password never appears in what the command prints.
fn no_password(dsn: &str, text: &str) {
    let url = url::Url::parse(dsn).unwrap();
    if let Some(pw) = url.password() {
        assert!(
            !text.contains(&format!(":{pw}@")),
            "the credentials leaked: {text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dsn_sslmode_and_root_certificate_decide_whether_a_server_is_trusted() {
    let (ca_pem, acceptor) = certificates();
    let addr = tls_endpoint(acceptor, upstream(), Preamble::Postgres).await;
    let dir = tempfile::tempdir().unwrap();
    let ca = &ca_file(dir.path(), &ca_pem);

    // verify-full with the CA that signed the certificate (for 127.0.0.1): connected.
    let (_, dsn) = dsns(addr, &format!("sslmode=verify-full&sslrootcert={ca}"));
    let (code, stdout, stderr) = status(dsn.clone()).await;
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("up"), "{stdout}\n{stderr}");
    no_password(&dsn, &format!("{stdout}{stderr}"));

    // verify-full against the system's roots only: refused, for the certificate.
    let (_, dsn) = dsns(addr, "sslmode=verify-full");
    let (code, stdout, stderr) = status(dsn.clone()).await;
    assert_ne!(code, Some(0), "{stdout}\n{stderr}");
    assert!(
        stderr.to_lowercase().contains("certificate"),
        "the reason is the certificate: {stderr}"
    );
    assert!(
        !stdout.contains(" up"),
        "an unverified server must not be reported up: {stdout}"
    );
    no_password(&dsn, &format!("{stdout}{stderr}"));

    // verify-ca with the CA: connected.
    let (_, dsn) = dsns(addr, &format!("sslmode=verify-ca&sslrootcert={ca}"));
    let (code, stdout, stderr) = status(dsn).await;
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");

    // disable: the TLS-only server closes the connection.
    let (_, dsn) = dsns(addr, "sslmode=disable");
    let (code, stdout, stderr) = status(dsn.clone()).await;
    assert_ne!(code, Some(0), "{stdout}\n{stderr}");
    no_password(&dsn, &format!("{stdout}{stderr}"));

    // No sslmode: sqlx's `prefer` takes TLS when offered but checks no certificate, so
    // this server, signed by a CA nothing trusts, is accepted. This is why the README
    // says to set verify-full.
    let (_, dsn) = dsns(addr, "");
    let (code, stdout, stderr) = status(dsn).await;
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
}
