//! Issue 12, item 4: 1,100 idle sockets and slow-loris heads against the Application
//! API. The node keeps at most its per-address cap of them, closes silent ones after the
//! header timeout, and answers honest calls meanwhile.

use mesg_attacks::Api;
use mesg_attacks::http::{honest_echo, start_echo};
use mesg_node::api::serve::{HEADER_READ_TIMEOUT, MAX_CONNECTIONS_PER_IP};
use mesg_testkit::NodeProcess;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::test(flavor = "multi_thread")]
async fn idle_and_slow_sockets_do_not_stop_the_api() {
    let node = NodeProcess::start(&[]);
    let api = Api::new(&node);
    start_echo(&api).await;

    let mut flood = Vec::new();
    for i in 0..1100 {
        let mut s = TcpStream::connect(("127.0.0.1", node.api_port))
            .await
            .expect("connect");
        if i % 2 == 0 {
            // Slow-loris: a head that never ends.
            let _ = s
                .write_all(
                    format!(
                        "GET /v1/node HTTP/1.1\r\nHost: 127.0.0.1:{}\r\n",
                        node.api_port
                    )
                    .as_bytes(),
                )
                .await;
        }
        flood.push(s);
    }
    // Honest work is served while the flood is held open.
    let fresh = Api::new(&node);
    assert_eq!(fresh.get("/v1/node").await.status, 200);
    honest_echo(&fresh, "during the flood").await;

    let mut held = 0;
    for s in &mut flood {
        let mut b = [0u8; 1];
        if tokio::time::timeout(Duration::from_millis(2), s.read(&mut b))
            .await
            .is_err()
        {
            held += 1;
        }
    }
    assert!(held <= MAX_CONNECTIONS_PER_IP, "{held} sockets held");

    // What is still held is closed after the header timeout.
    tokio::time::sleep(HEADER_READ_TIMEOUT + Duration::from_secs(1)).await;
    for s in &mut flood {
        let mut b = [0u8; 1];
        let r = tokio::time::timeout(Duration::from_millis(50), s.read(&mut b)).await;
        assert!(
            matches!(r, Ok(Ok(0)) | Ok(Err(_))),
            "a socket outlived the header timeout"
        );
    }
    honest_echo(&Api::new(&node), "after the flood").await;
}
