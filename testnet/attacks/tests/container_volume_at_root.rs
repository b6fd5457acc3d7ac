//! Issue 12, item 8: a definition that mounts a volume at `/` (or under `/proc`, `/sys`,
//! `/dev`) is refused with 400 before anything is built; honest work goes on.

use mesg_attacks::Api;
use mesg_attacks::containers::{Variant, deploy, honest_echo_completes};
use mesg_testkit::NodeProcess;

#[tokio::test(flavor = "multi_thread")]
async fn a_volume_at_root_is_refused() {
    let node = NodeProcess::start(&[]);
    let api = Api::new(&node);
    for (path, words) in [
        ("/", "whole file system"),
        ("/proc/sys", "belongs to the kernel and Docker"),
        ("/data/../etc", "not a plain path"),
    ] {
        let hostile = Variant::new("echo", &format!("  volumes: [\"{path}\"]\n"), "");
        let r = deploy(&api, &hostile.dir).await;
        assert_eq!(r.status, 400, "{path}: {}", r.body);
        assert_eq!(r.body["code"], "invalid_definition", "{}", r.body);
        let details = r.body["details"].to_string();
        assert!(
            details.contains("configuration.volumes[0]") && details.contains(words),
            "{path}: {}",
            r.body
        );
    }
    let services = api.get("/v1/services").await;
    assert_eq!(services.status, 200);
    assert!(
        !services.body.to_string().contains("\"hash\""),
        "nothing was recorded: {}",
        services.body
    );
    honest_echo_completes(&api).await;
}
