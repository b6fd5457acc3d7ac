//! Issue 12, item 8: a dependency, and a package's Dockerfile (`FROM`), may only use an
//! image this node built or one its operator allowed (`--allow-image`), and a definition
//! may not publish on a host port the node itself uses. Both are refused with 400 before anything is built; honest work goes on.

use mesg_attacks::Api;
use mesg_attacks::containers::{ForeignImage, Variant, deploy, honest_echo_completes};
use mesg_testkit::NodeProcess;

#[tokio::test(flavor = "multi_thread")]
async fn a_dependency_image_the_node_did_not_build_is_refused() {
    let node = NodeProcess::start(&[]);
    let api = Api::new(&node);
    let foreign = ForeignImage::build();
    let hostile = Variant::new(
        "echo",
        "",
        &format!("dependencies:\n  db:\n    image: {}\n", foreign.tag),
    );
    let r = deploy(&api, &hostile.dir).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.body["code"], "image_not_allowed", "{}", r.body);
    let message = r.body["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(&foreign.tag) && message.contains("--allow-image"),
        "{message}"
    );

    // The same image as the base of the package's own build: refused before building.
    let hostile = Variant::new("echo", "", "");
    std::fs::write(
        hostile.dir.join("Dockerfile"),
        format!(
            "FROM {}\nCOPY echo /echo\nENTRYPOINT [\"/echo\"]\n",
            foreign.tag
        ),
    )
    .expect("Dockerfile");
    let r = deploy(&api, &hostile.dir).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.body["code"], "image_not_allowed", "{}", r.body);
    let message = r.body["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("Dockerfile builds from") && message.contains(&foreign.tag),
        "{message}"
    );

    // The node's own service API port as a host port: refused too.
    let hostile = Variant::new(
        "echo",
        &format!("  ports: [\"{}:7000\"]\n", node.service_port),
        "",
    );
    let r = deploy(&api, &hostile.dir).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.body["code"], "reserved_port", "{}", r.body);
    assert!(
        r.body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("service API"),
        "{}",
        r.body
    );

    honest_echo_completes(&api).await;
}
