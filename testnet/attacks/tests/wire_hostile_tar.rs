//! Item 6: hand-made package tars whose headers lie about sizes. One declared almost 2^64
//! bytes (the running total overflowed and the deploy handler panicked); others declared
//! 200 MiB per entry and held three bytes (each entry reserved 200 MiB: 586 GiB of
//! address space for a 6 MB tar). Both must be a plain 400 `invalid_package` while the
//! node keeps running honest work.

use mesg_attacks::Api;
use mesg_attacks::wire::{deploy_and_start, forged_tar, post_package};
use mesg_testkit::{NodeProcess, service_dir};
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn tars_that_lie_about_sizes_are_refused_and_echo_still_runs() {
    let node = NodeProcess::start(&[]);
    let api = Api::new(&node);
    deploy_and_start(&api, &service_dir("echo"), false).await;

    // A PAX size that the tar reader follows, and a header size of 2^64 - 1.
    let overflow = forged_tar(&[("mesg.yml", 1, None, b"x"), ("b", u64::MAX, Some(2), b"yy")]);
    // Entries declaring 200 MiB each and holding 3 bytes.
    let entries: Vec<(String, u64, Option<u64>, &[u8])> = (0..2000)
        .map(|i| (format!("f{i}"), 200 << 20, Some(3), &b"abc"[..]))
        .collect();
    let entries: Vec<(&str, u64, Option<u64>, &[u8])> = entries
        .iter()
        .map(|(n, s, p, d)| (n.as_str(), *s, *p, *d))
        .collect();
    let reservations = forged_tar(&entries);
    // No PAX: the header's 200 MiB is the size the reader uses, beyond the tar's end.
    let truncated = forged_tar(&[("mesg.yml", 200 << 20, None, b"abc")]);

    for (name, tar) in [
        ("overflow", overflow),
        ("reservations", reservations),
        ("truncated", truncated),
    ] {
        let reply = post_package(&api, tar, false).await;
        assert_eq!(reply.status, 400, "{name}: {}", reply.body);
        assert_eq!(
            reply.body["code"], "invalid_package",
            "{name}: {}",
            reply.body
        );
        let message = reply.body["message"].as_str().unwrap_or_default();
        assert!(!message.is_empty(), "{name}: {}", reply.body);
        if name == "truncated" {
            assert!(message.contains("truncated or forged"), "{message}");
        }
        // Honest work completes after each refusal: the handler did not die.
        let e = api
            .exec_wait("echo", "echo", json!({"message": name}))
            .await;
        assert_eq!(e["status"], "Completed", "{name}: {e}");
    }
}
