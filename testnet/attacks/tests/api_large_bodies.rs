//! Issue 17 raised the work-message limit from 4 to 16 MiB (10 MiB payloads). What that
//! opens, and what keeps it bounded: a body over the limit is refused with
//! `413 payload_too_large` and the limit; bodies over 4 MiB (or without a declared
//! length) are read four at a time node-wide, so clients that announce large bodies and
//! send them slowly get `503 busy` beyond that while small requests still run.

use mesg_attacks::Api;
use mesg_attacks::http::{honest_echo, send_head, start_echo};
use mesg_protocol::wire::MAX_WORK_MESSAGE;
use mesg_testkit::NodeProcess;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

fn head(port: u16, token: &str, length: usize) -> String {
    format!(
        "POST /v1/executions HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {token}\r\ncontent-type: application/json\r\ncontent-length: {length}\r\n\r\n"
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn oversized_bodies_are_refused_and_large_ones_read_four_at_a_time() {
    let node = NodeProcess::start(&[]);
    let api = Api::new(&node);
    start_echo(&api).await;
    let port = node.api_port;
    let token = node.token().expect("the node's token");

    // Over the limit: refused at once, with the code and the limit.
    let (_, answer) = send_head(port, &head(port, &token, MAX_WORK_MESSAGE + 64 * 1024 + 1)).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer:?}");
    assert!(
        answer.contains("\"code\":\"payload_too_large\""),
        "{answer}"
    );
    assert!(
        answer.contains(&(MAX_WORK_MESSAGE + 64 * 1024).to_string()),
        "{answer}"
    );

    // Four clients announce 10 MiB bodies and stall: they hold the node's large-body
    // slots; a fifth is told to come back, a small request still runs.
    let mut stalled = Vec::new();
    for _ in 0..4 {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        s.write_all(head(port, &token, 10 << 20).as_bytes())
            .await
            .unwrap();
        s.write_all(b"{\"service\":\"echo\",").await.unwrap();
        stalled.push(s);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (took, answer) = send_head(port, &head(port, &token, 10 << 20)).await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer:?}");
    assert!(answer.contains("\"code\":\"busy\""), "{answer}");
    assert!(took < Duration::from_secs(2), "answered after {took:?}");
    honest_echo(&api, "small requests still run").await;

    // Once they give up, a real 10 MiB payload runs and comes back whole.
    drop(stalled);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let message = "z".repeat(10 << 20);
    honest_echo(&api, &message).await;
}
