//! Issue 12, item 10: the service API read and parsed up to 4 MiB before checking the
//! token. Now a caller without a valid token is answered 401 before any of its body is
//! sent.

use mesg_attacks::Api;
use mesg_attacks::http::{honest_echo, send_head, start_echo};
use mesg_testkit::NodeProcess;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread")]
async fn an_unauthenticated_4_mib_body_is_refused_unread() {
    let node = NodeProcess::start(&[]);
    let api = Api::new(&node);
    start_echo(&api).await;
    let port = node.service_port;
    let attempts = (0..50).map(|i| {
        let path = if i % 2 == 0 {
            "/v1/service/results"
        } else {
            "/v1/service/events"
        };
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer forged-{i}\r\ncontent-type: application/json\r\ncontent-length: 4194304\r\n\r\n"
        );
        async move { send_head(port, &head).await }
    });
    for (took, answer) in futures::future::join_all(attempts).await {
        assert!(answer.starts_with("HTTP/1.1 401"), "{answer:?}");
        assert!(answer.contains("\"code\":\"unauthorized\""), "{answer}");
        assert!(took < Duration::from_secs(2), "answered after {took:?}");
    }
    honest_echo(&api, "containers still report").await;
}
