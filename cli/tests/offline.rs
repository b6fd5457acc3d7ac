//! `mesg` without a node: friendly failures, local checks, files it creates, help.

mod common;

use common::{mesg, mesg_in};

const NO_NODE: &str = "http://127.0.0.1:1";

#[test]
fn no_node_is_one_friendly_line_and_exit_code_1() {
    for args in [
        vec!["node", "info"],
        vec!["service", "list"],
        vec!["exec", "echo", "echo", "-d", "a=1"],
        vec!["events"],
        vec!["executions", "watch"],
        vec!["process", "list"],
        vec!["process", "logs", "p"],
        vec!["peers"],
        vec!["service", "list", "--network"],
    ] {
        let mut full = vec!["--node", NO_NODE];
        full.extend(&args);
        let run = mesg(&full);
        assert_eq!(run.code, 1, "{args:?}: {run:#?}");
        assert_eq!(
            run.stderr.trim_end(),
            "error: no mesg node answers at http://127.0.0.1:1 (connection refused). Start one with `mesg-node`, or point --node / MESG_NODE at a running node.",
            "{args:?}"
        );
        assert!(run.stdout.is_empty(), "{args:?}: {run:#?}");
    }
    // The URL also comes from MESG_NODE.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mesg"))
        .args(["node", "info"])
        .env("MESG_NODE", NO_NODE)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("http://127.0.0.1:1 (connection refused)")
    );
}

#[test]
fn bad_node_urls_are_explained() {
    let run = mesg(&["--node", "not a url", "node", "info"]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr
            .starts_with("error: --node `not a url` is not a URL"),
        "{run:#?}"
    );
    let run = mesg(&["--node", "https://example.org", "node", "info"]);
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("plain HTTP only"), "{run:#?}");
}

#[test]
fn validate_lists_every_error_with_its_position() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("mesg.yml");
    std::fs::write(
        &file,
        "name: Broken\nsid: Not_A_Sid\ntasks:\n  t:\n    inputs:\n      a: {type: Strin}\n    outputs: {}\n    timout: 3s\nevents:\n  e:\n    data:\n      x: {type: Number, optinal: true}\n",
    )
    .unwrap();
    let run = mesg(&["service", "validate", dir.path().to_str().unwrap()]);
    assert_eq!(run.code, 1, "{run:#?}");
    let prefix = format!("{}:", file.display());
    let errors: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.starts_with(&prefix))
        .collect();
    assert!(errors.len() >= 4, "every error is listed: {run:#?}");
    for e in &errors {
        // FILE:LINE:COL: path: message
        let rest = &e[prefix.len()..];
        let mut parts = rest.splitn(3, ':');
        let line: usize = parts.next().unwrap().parse().expect("a line number");
        let col: usize = parts.next().unwrap().parse().expect("a column number");
        assert!(line >= 1 && col >= 1, "{e}");
    }
    assert!(run.stderr.contains("sid"), "{run:#?}");
    assert!(run.stderr.contains("Strin"), "{run:#?}");
    assert!(run.stderr.contains("timout"), "{run:#?}");
    assert!(run.stderr.contains("optinal"), "{run:#?}");
    assert!(
        run.stderr
            .contains(&format!("{} error(s) in", errors.len())),
        "{run:#?}"
    );
    // An unreadable path is exit code 2.
    let run = mesg(&["service", "validate", "/nonexistent/mesg.yml"]);
    assert_eq!(run.code, 2, "{run:#?}");
}

#[test]
fn deploy_checks_the_definition_before_contacting_the_node() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("mesg.yml"),
        "name: x\ntasks:\n  t:\n    inputz: {}\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("Dockerfile"), "FROM scratch\n").unwrap();
    let run = mesg(&[
        "--node",
        NO_NODE,
        "service",
        "deploy",
        dir.path().to_str().unwrap(),
    ]);
    assert_eq!(run.code, 1, "{run:#?}");
    assert!(run.stderr.contains("mesg.yml:4:5:"), "{run:#?}");
    assert!(!run.stderr.contains("no mesg node answers"), "{run:#?}");
    // No Dockerfile: the package error names it.
    let empty = tempfile::tempdir().unwrap();
    std::fs::write(empty.path().join("mesg.yml"), "name: x\n").unwrap();
    let run = mesg(&[
        "--node",
        NO_NODE,
        "service",
        "deploy",
        empty.path().to_str().unwrap(),
    ]);
    assert_eq!(run.code, 1, "{run:#?}");
    assert!(run.stderr.contains("Dockerfile"), "{run:#?}");
}

#[test]
fn exec_inputs_are_checked_before_contacting_the_node() {
    let run = mesg(&["--node", NO_NODE, "exec", "s", "t", "-d", "=x"]);
    assert_eq!(run.code, 1, "{run:#?}");
    assert!(
        run.stderr.contains("the key before `=` is empty"),
        "{run:#?}"
    );
    let run = mesg(&["--node", NO_NODE, "exec", "s", "t", "--input", "[1]"]);
    assert_eq!(run.code, 1, "{run:#?}");
    assert!(run.stderr.contains("JSON object"), "{run:#?}");
    let run = mesg(&[
        "--node", NO_NODE, "exec", "s", "t", "--input", "{}", "-d", "a=1",
    ]);
    assert_eq!(
        run.code, 2,
        "--input and -d conflict (a usage error): {run:#?}"
    );
    let run = mesg(&["--node", NO_NODE, "exec", "s", "t", "--timeout", "soon"]);
    assert_eq!(run.code, 2, "{run:#?}");
    // --verify is checked as it is parsed: a usage error that says the rule.
    for (spec, word) in [
        ("3/2", "quorum 3 is more than replicas 2"),
        ("2/3/2", "max_total 2 is less than replicas 3"),
        ("2/17", "more than 16"),
        ("two", "QUORUM/REPLICAS"),
    ] {
        let run = mesg(&["--node", NO_NODE, "exec", "s", "t", "--verify", spec]);
        assert_eq!(run.code, 2, "{spec}: {run:#?}");
        assert!(run.stderr.contains(word), "{spec}: {run:#?}");
    }
    // A valid one gets as far as the node.
    let run = mesg(&["--node", NO_NODE, "exec", "s", "t", "--verify", "2/3"]);
    assert_eq!(run.code, 1, "{run:#?}");
    assert!(run.stderr.contains("no mesg node answers"), "{run:#?}");
}

#[test]
fn accounts_are_created_listed_and_never_overwritten() {
    let home = tempfile::tempdir().unwrap();
    let h = Some(home.path());
    let created = mesg_in(h, &["account", "create"]);
    created.ok();
    let key = created
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("public key: "))
        .expect("a public key line")
        .to_string();
    mesg_in(h, &["account", "create", "ci"]).ok();
    let list = mesg_in(h, &["account", "list"]);
    list.ok();
    let default_line = list
        .stdout
        .lines()
        .find(|l| l.starts_with("default "))
        .expect("default is listed");
    assert!(default_line.ends_with(&key), "{list:#?}");
    assert!(
        list.stdout.lines().any(|l| l.starts_with("ci ")),
        "{list:#?}"
    );
    let path = home.path().join("accounts/default.key");
    let before = std::fs::read(&path).unwrap();
    let again = mesg_in(h, &["account", "create", "default"]);
    assert_eq!(again.code, 1, "{again:#?}");
    assert!(again.stderr.contains("already exists"), "{again:#?}");
    assert_eq!(std::fs::read(&path).unwrap(), before);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    let json = mesg_in(h, &["--json", "account", "list"]);
    let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(v["accounts"][1]["public_key"], key.as_str());
    // Signing with a missing account fails before contacting the node.
    let run = mesg_in(
        h,
        &["--node", NO_NODE, "--account", "nobody", "exec", "s", "t"],
    );
    assert_eq!(run.code, 1, "{run:#?}");
    assert!(
        run.stderr.contains("mesg account create nobody"),
        "{run:#?}"
    );
}

#[test]
fn init_creates_a_service_that_validates() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("Hello World");
    let d = dir.to_str().unwrap();
    let run = mesg(&["service", "init", d]);
    run.ok();
    for f in ["mesg.yml", "Dockerfile", ".dockerignore", "README.md"] {
        assert!(dir.join(f).is_file(), "{f} is created");
    }
    let dockerfile = std::fs::read_to_string(dir.join("Dockerfile")).unwrap();
    assert!(dockerfile.contains("FROM scratch"), "{dockerfile}");
    let readme = std::fs::read_to_string(dir.join("README.md")).unwrap();
    assert!(readme.contains("crt-static"), "{readme}");
    let valid = mesg(&["service", "validate", d]);
    valid.ok();
    assert!(valid.stdout.contains("is valid"), "{valid:#?}");
    assert!(valid.stdout.contains("sid:  hello-world"), "{valid:#?}");
    assert!(valid.stdout.contains("tasks: hello"), "{valid:#?}");
    assert!(valid.stdout.contains("service hash: "), "{valid:#?}");
    // A second init refuses and changes nothing.
    std::fs::write(dir.join("mesg.yml"), "name: mine\n").unwrap();
    let again = mesg(&["service", "init", d, "--name", "Other"]);
    assert_eq!(again.code, 1, "{again:#?}");
    assert!(again.stderr.contains("not overwriting"), "{again:#?}");
    assert_eq!(
        std::fs::read_to_string(dir.join("mesg.yml")).unwrap(),
        "name: mine\n"
    );
}

/// The subcommands listed in a help text's `Commands:` section.
fn subcommands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        // A wrapped description continues with a deeper indent.
        .filter(|l| !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(str::to_string)
        .collect()
}

#[test]
fn every_command_has_help_with_examples() {
    let mut queue: Vec<Vec<String>> = vec![vec![]];
    let mut leaves = 0;
    while let Some(path) = queue.pop() {
        let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
        args.push("--help");
        let run = mesg(&args);
        assert_eq!(run.code, 0, "{args:?}: {run:#?}");
        assert!(run.stdout.contains("Usage: mesg"), "{args:?}");
        let subs = subcommands(&run.stdout);
        if subs.is_empty() {
            leaves += 1;
            assert!(run.stdout.contains("Examples:"), "{args:?} has examples");
            assert!(
                run.stdout.contains("--node <URL>"),
                "{args:?} shows global flags"
            );
        }
        for s in subs {
            let mut p = path.clone();
            p.push(s);
            queue.push(p);
        }
    }
    // service (init validate deploy list search show start stop delete logs dev), exec,
    // executions (list show watch cancel verify why), events, process (create validate
    // list show runs run logs delete), peers (list ban unban), node info, account (create list),
    // context (add list use unset remove), completions, ledger (accounts log settle limit)
    assert_eq!(leaves, 43);
}

#[test]
fn completion_scripts_are_printed_for_every_shell() {
    for (shell, marker) in [
        ("bash", "complete -F _mesg"),
        ("zsh", "#compdef mesg"),
        ("fish", "complete -c mesg"),
    ] {
        let run = mesg(&["completions", shell]);
        run.ok();
        assert!(
            run.stdout.contains(marker),
            "{shell}: {}",
            &run.stdout[..200]
        );
        assert!(
            run.stdout.contains("idempotency-key"),
            "{shell} knows exec's flags"
        );
    }
    let bad = mesg(&["completions", "tcsh"]);
    assert_eq!(bad.code, 2, "{bad:#?}");
}

#[test]
fn contexts_are_added_used_and_overridden_by_flags() {
    let home = tempfile::tempdir().unwrap();
    let h = Some(home.path());
    mesg_in(
        h,
        &[
            "context", "add", "far", "--node", NO_NODE, "--token", "t0", "--use",
        ],
    )
    .ok();
    let list = mesg_in(h, &["context", "list"]);
    list.ok();
    assert!(list.stdout.contains("* far"), "{list:#?}");
    // The current context's node is the one asked.
    let run = mesg_in(h, &["peers"]);
    assert_eq!(run.code, 1, "{run:#?}");
    assert!(run.stderr.contains(NO_NODE), "{run:#?}");
    // --node wins over it.
    let run = mesg_in(h, &["--node", "http://127.0.0.1:9", "peers"]);
    assert!(run.stderr.contains("127.0.0.1:9"), "{run:#?}");
    // An unknown context is named with the known ones.
    let run = mesg_in(h, &["--context", "near", "peers"]);
    assert_eq!(run.code, 1, "{run:#?}");
    assert!(run.stderr.contains("contexts: far"), "{run:#?}");
    // Tokens are in a file only its owner reads.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(home.path().join("contexts.json"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    mesg_in(h, &["context", "remove", "far"]).ok();
    let run = mesg_in(h, &["context", "list"]);
    assert!(run.stderr.contains("no contexts yet"), "{run:#?}");
}

#[test]
fn process_files_are_read_and_their_env_collected_before_contacting_the_node() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("p.yml");
    std::fs::write(
        &file,
        "name: p\nsteps:\n  - trigger: {service: echo, event: tick}  # $(env:NOT_THIS)\n  - task: {service: echo, task: echo, inputs: {message: \"$(env:MESG_TEST_WHO)\"}}\n",
    )
    .unwrap();
    let f = file.to_str().unwrap();
    for command in ["create", "validate"] {
        let run = mesg(&["--node", NO_NODE, "process", command, f]);
        assert_eq!(run.code, 1, "{run:#?}");
        assert_eq!(
            run.stderr.trim_end(),
            format!(
                "error: {f}: the file uses $(env:MESG_TEST_WHO), which is not set: give it with --env MESG_TEST_WHO=VALUE, or set it in the environment"
            ),
            "{command}"
        );
        // Given: the node is asked (and is not there).
        let run = mesg(&[
            "--node",
            NO_NODE,
            "process",
            command,
            f,
            "--env",
            "MESG_TEST_WHO=ops",
        ]);
        assert_eq!(run.code, 1, "{run:#?}");
        assert!(run.stderr.contains("no mesg node answers"), "{run:#?}");
    }
    let run = mesg(&[
        "--node",
        NO_NODE,
        "process",
        "validate",
        "/nonexistent/p.yml",
    ]);
    assert_eq!(run.code, 2, "{run:#?}");
    assert!(
        run.stderr.contains("cannot read /nonexistent/p.yml"),
        "{run:#?}"
    );
    let run = mesg(&["--node", NO_NODE, "process", "create", "/nonexistent/p.yml"]);
    assert_eq!(run.code, 1, "{run:#?}");
    let run = mesg(&["--node", NO_NODE, "process", "runs", "p", "--limit", "0"]);
    assert_eq!(run.code, 2, "{run:#?}");
}
