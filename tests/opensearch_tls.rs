//! TLS to OpenSearch against a real endpoint: a loopback TLS terminator in front of the
//! real OpenSearch, with a certificate signed by a CA generated here (so trusted by
//! nothing else). By default the certificate is refused; with `--os-ca-cert` (the CA's
//! PEM) it is accepted; with `--verify-certs false` it is accepted with a warning; a CA
//! file that cannot be read is a usage error naming the flag.

mod common;

use std::net::SocketAddr;

use common::tls::{Preamble, ca_file, certificates, tls_endpoint};

fn upstream() -> SocketAddr {
    let hosts = common::os_hosts();
    let url = url::Url::parse(hosts.split(',').next().unwrap()).unwrap();
    let host = url.host_str().unwrap().to_string();
    std::net::ToSocketAddrs::to_socket_addrs(&(host.as_str(), url.port().unwrap_or(9200)))
        .unwrap()
        .next()
        .unwrap()
}

/// `shadowbench status --backend opensearch` against `https://addr` with `args`, from a
/// blocking thread (the terminator runs on this test's runtime).
async fn status(addr: SocketAddr, args: &[&str]) -> (Option<i32>, String, String) {
    let mut cmd = common::shadowbench(None);
    cmd.env("ML_OPENSEARCH_HOSTS", format!("https://{addr}"))
        .env_remove("ML_OPENSEARCH_CA_CERT")
        .env_remove("ML_OPENSEARCH_VERIFY_CERTS")
        .args(["status", "--backend", "opensearch"])
        .args(args);
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_self_signed_certificate_is_refused_unless_its_ca_is_given_or_checks_are_off() {
    let (ca_pem, acceptor) = certificates();
    let addr = tls_endpoint(acceptor, upstream(), Preamble::None).await;
    let dir = tempfile::tempdir().unwrap();
    let ca = &ca_file(dir.path(), &ca_pem);

    // Verified against the system's roots only: refused.
    let (code, stdout, stderr) = status(addr, &[]).await;
    // Exit 3: the cluster could not be used; the reason is the certificate.
    assert_eq!(code, Some(3), "{stdout}\n{stderr}");
    assert!(stderr.contains("certificate"), "{stderr}");
    assert!(
        !stdout.contains("up"),
        "an unverified server must not be reported up: {stdout}\n{stderr}"
    );

    // With the CA that signed it: accepted, and the cluster answers through it.
    let (code, stdout, stderr) = status(addr, &["--os-ca-cert", ca]).await;
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("up"), "{stdout}\n{stderr}");
    assert!(!stderr.contains("not verified"), "{stderr}");

    // The same through the environment variable.
    let mut cmd = common::shadowbench(None);
    cmd.env("ML_OPENSEARCH_HOSTS", format!("https://{addr}"))
        .env("ML_OPENSEARCH_CA_CERT", ca)
        .args(["status", "--backend", "opensearch"]);
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");

    // Checks turned off: accepted, with a warning saying what that means.
    let (code, stdout, stderr) = status(addr, &["--verify-certs", "false"]).await;
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert!(stderr.contains("are not verified"), "{stderr}");

    // A CA file that is not there: a usage error naming the flag and the file.
    let missing = dir.path().join("missing.pem");
    let missing = missing.to_str().unwrap();
    let (code, stdout, stderr) = status(addr, &["--os-ca-cert", missing]).await;
    assert_eq!(code, Some(2), "{stdout}\n{stderr}");
    assert!(stderr.contains("--os-ca-cert"), "{stderr}");
    assert!(stderr.contains("missing.pem"), "{stderr}");

    // A file that is no certificate: the same.
    let junk = dir.path().join("junk.pem");
    std::fs::write(&junk, "not a certificate").unwrap();
    let (code, _, stderr) = status(addr, &["--os-ca-cert", junk.to_str().unwrap()]).await;
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("--os-ca-cert"), "{stderr}");
    assert!(stderr.contains("junk.pem"), "{stderr}");
}
