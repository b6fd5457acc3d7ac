//! Issue 12, item 4: the service API listened on every interface. It still has to (its
//! containers call it through their network's gateway), but it now serves only loopback
//! and this node's instance networks: a connection from any other address is closed
//! before a byte is read.

use mesg_attacks::Api;
use mesg_attacks::http::{honest_echo, start_echo};
use mesg_testkit::NodeProcess;
use std::net::IpAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A local address that is neither loopback nor in a Docker network of the node.
fn outside_address() -> Option<IpAddr> {
    let out = std::process::Command::new("hostname")
        .arg("-I")
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter_map(|a| a.parse::<IpAddr>().ok())
        .find(|a| a.is_ipv4() && !a.is_loopback())
}

#[tokio::test(flavor = "multi_thread")]
async fn strangers_cannot_talk_to_the_service_api() {
    let node = NodeProcess::start(&[]);
    let api = Api::new(&node);
    start_echo(&api).await;
    let Some(outside) = outside_address() else {
        eprintln!("no non-loopback address on this host: nothing to attack from");
        return;
    };
    for _ in 0..20 {
        let mut s = tokio::net::TcpStream::connect((outside, node.service_port))
            .await
            .expect("the port is open on every interface");
        let _ = s
            .write_all(
                b"GET /v1/service/tasks HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer guess\r\n\r\n",
            )
            .await;
        let mut buf = [0u8; 64];
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .expect("closed at once, not left hanging")
            .unwrap_or(0);
        assert_eq!(n, 0, "answered: {}", String::from_utf8_lossy(&buf[..n]));
    }
    // Loopback still gets answers (401 without a token), and the containers still work.
    let (_, answer) = mesg_attacks::http::send_head(
        node.service_port,
        "GET /v1/service/tasks HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer:?}");
    honest_echo(&api, "containers still reach the node").await;
}
