//! Issue 12, low: an unfiltered event stream subscribed to every service's topic and
//! never left them. Now the node leaves them when the last such stream closes.

use mesg_attacks::Api;
use mesg_attacks::http::{honest_echo, joined, metric, start_echo};
use mesg_testkit::NodeProcess;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread")]
async fn closed_unfiltered_streams_leave_their_topics() {
    let b = NodeProcess::start(&[]);
    let a = joined(&b);
    let (api_a, api_b) = (Api::new(&a), Api::new(&b));
    start_echo(&api_b).await;
    for _ in 0..300 {
        let v = api_a.get("/v1/network/services").await.body;
        if v["services"]
            .as_array()
            .is_some_and(|s| s.iter().any(|s| s["sid"] == "echo"))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Many unfiltered streams opened, then dropped by the client.
    let mut streams = Vec::new();
    for _ in 0..20 {
        let resp = api_a
            .request(reqwest::Method::GET, "/v1/events/stream")
            .send()
            .await
            .expect("stream");
        assert_eq!(resp.status().as_u16(), 200);
        streams.push(resp);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(metric(&api_a, "mesg_event_topics_subscribed").await >= Some(1.0));
    drop(streams);
    let mut left = None;
    for _ in 0..100 {
        left = metric(&api_a, "mesg_event_topics_subscribed").await;
        if left == Some(0.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(left, Some(0.0), "topics still subscribed");
    honest_echo(&api_a, "across the network").await;
}
