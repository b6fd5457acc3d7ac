//! The `mesg.yml` format: every field parsed, every malformed file rejected with an error
//! naming the right field, and hashes that never change by accident.

use mesg_protocol::definition::PortMapping;
use mesg_protocol::schema::ParamType;
use mesg_protocol::{Hash32, PackageHash, ServiceDefinition};

const FULL: &str = include_str!("fixtures/full.yml");

#[test]
fn every_field_is_parsed() {
    let d = ServiceDefinition::from_yaml(FULL).unwrap();
    assert_eq!(d.name, "Email sender");
    assert_eq!(d.sid.as_deref(), Some("acme.email"), "sid is lowercased");
    assert_eq!(
        d.description.as_deref(),
        Some("Sends emails.\nTwo lines.\n")
    );
    assert_eq!(
        d.repository.as_deref(),
        Some("https://github.com/acme/email")
    );
    let c = &d.configuration;
    assert_eq!(c.image, None);
    assert_eq!(c.volumes, vec!["/data"]);
    assert_eq!(c.volumes_from, vec!["db"]);
    assert_eq!(
        c.ports,
        vec![
            PortMapping {
                container: 80,
                host: None
            },
            PortMapping {
                container: 81,
                host: Some(8080)
            },
            PortMapping {
                container: 9000,
                host: None
            },
        ]
    );
    assert_eq!(c.command.as_deref(), Some("/bin/email"));
    assert_eq!(c.args, vec!["--verbose", "-x"]);
    assert_eq!(c.env.get("API_KEY").map(String::as_str), Some("secret"));
    assert_eq!(c.env.get("MODE").map(String::as_str), Some(""));
    let db = &d.dependencies["db"];
    assert_eq!(db.image.as_deref(), Some("redis:7"));
    assert_eq!(db.volumes, vec!["/var/lib/redis"]);
    assert_eq!(
        db.ports,
        vec![PortMapping {
            container: 6379,
            host: None
        }]
    );
    assert_eq!(db.command.as_deref(), Some("redis-server"));
    assert_eq!(db.args, vec!["--appendonly", "yes"]);
    assert_eq!(db.env.get("REDIS_X").map(String::as_str), Some("1"));
    assert_eq!(d.dependencies["cache"].volumes_from, vec!["service", "db"]);

    let send = &d.tasks["send"];
    assert_eq!(send.name.as_deref(), Some("Send"));
    assert_eq!(send.description.as_deref(), Some("Send one email"));
    assert_eq!(send.timeout_ms, Some(30_000));
    assert_eq!(
        send.price,
        Some(mesg_protocol::economy::Price {
            call: 1000,
            per_ms: 2,
            per_kib: 5
        })
    );
    assert_eq!(d.tasks["ping"].price, None);
    assert_eq!(d.economy.map(|e| e.publisher_share_bps), Some(1000));
    let to = &send.inputs["to"];
    assert_eq!(to.name.as_deref(), Some("Recipient"));
    assert_eq!(to.description.as_deref(), Some("who"));
    assert_eq!(to.kind, ParamType::String);
    assert!(!to.optional && !to.repeated);
    let cc = &send.inputs["cc"];
    assert!(cc.optional && cc.repeated);
    let meta = &send.inputs["meta"];
    assert_eq!(meta.kind, ParamType::Object);
    let nested = meta.object.as_ref().unwrap();
    assert_eq!(nested["priority"].kind, ParamType::Number);
    assert_eq!(nested["urgent"].kind, ParamType::Boolean);
    assert_eq!(send.inputs["extra"].kind, ParamType::Any);
    assert_eq!(send.outputs["id"].kind, ParamType::String);
    assert_eq!(d.tasks["ping"].timeout_ms, Some(1_500_000));
    let sent = &d.events["sent"];
    assert_eq!(sent.name.as_deref(), Some("Sent"));
    assert_eq!(sent.description.as_deref(), Some("an email left"));
    assert_eq!(sent.data["raw"].kind, ParamType::Object);
    assert!(sent.data["raw"].object.is_none());
}

#[test]
fn a_definition_round_trips_through_the_wire_codec_and_json() {
    let d = ServiceDefinition::from_yaml(FULL).unwrap();
    let bytes = mesg_protocol::wire::encode(&d, 1 << 20).unwrap();
    let back: ServiceDefinition = mesg_protocol::wire::decode(&bytes, 1 << 20).unwrap();
    assert_eq!(back, d);
    let json = serde_json::to_string(&d).unwrap();
    assert_eq!(serde_json::from_str::<ServiceDefinition>(&json).unwrap(), d);
}

#[test]
fn a_minimal_definition_is_just_a_name() {
    let d = ServiceDefinition::from_yaml("name: x\n").unwrap();
    assert!(d.tasks.is_empty() && d.events.is_empty() && d.dependencies.is_empty());
}

#[test]
fn rendering_back_to_yaml_gives_the_same_definition() {
    let d = ServiceDefinition::from_yaml(FULL).unwrap();
    let again = ServiceDefinition::from_yaml(&d.to_yaml()).unwrap();
    assert_eq!(again, d);
    d.validate().unwrap();
}

/// The suggestion is in the message and, for tools, on its own.
#[test]
fn an_unknown_field_carries_its_suggestion() {
    let e = ServiceDefinition::from_yaml("name: x\ntasks:\n  t:\n    timout: 5s\n").unwrap_err();
    assert_eq!(
        e.to_string(),
        "4:5: tasks.t.timout: unknown field (did you mean `timeout`?); allowed fields: name, description, inputs, outputs, timeout, price, deterministic, verify"
    );
    assert_eq!(e.0[0].suggestion.as_deref(), Some("timeout"));
    let e = ServiceDefinition::from_yaml(
        "name: x\ntasks:\n  t:\n    inputs:\n      a: {type: string}\n",
    )
    .unwrap_err();
    assert_eq!(e.0[0].suggestion.as_deref(), Some("String"), "{e}");
}

/// (yaml, expected path, a word the message must contain)
const MALFORMED: &[(&str, &str, &str)] = &[
    ("", "", "empty"),
    ("name: [unclosed\n", "", "invalid YAML"),
    ("- a\n- b\n", "", "expected a mapping"),
    ("description: no name\n", "name", "required"),
    ("name: \"\"\n", "name", "empty"),
    ("name: \"a\\u0007b\"\n", "name", "control"),
    ("name: x\nname: y\n", "name", "duplicate"),
    ("name: x\nnmae: y\n", "nmae", "did you mean `name`"),
    ("name: x\nsid: \"bad sid!\"\n", "sid", "domain-style"),
    ("name: x\nsid: -start.x\n", "sid", "domain-style"),
    (
        "name: x\nsid: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n",
        "sid",
        "63",
    ),
    ("name: [a]\n", "name", "expected a string"),
    (
        "name: x\nconfiguration: 3\n",
        "configuration",
        "expected a mapping",
    ),
    (
        "name: x\nconfiguration:\n  image: foo\n",
        "configuration.image",
        "unknown field",
    ),
    (
        "name: x\nconfiguration:\n  volumes: [data]\n",
        "configuration.volumes[0]",
        "absolute",
    ),
    (
        "name: x\nconfiguration:\n  volumes: [/a, /a]\n",
        "configuration.volumes[1]",
        "twice",
    ),
    (
        "name: x\nconfiguration:\n  volumes: [/]\n",
        "configuration.volumes[0]",
        "whole file system",
    ),
    (
        "name: x\ndependencies:\n  db:\n    image: redis\n    volumes: [/proc/self]\n",
        "dependencies.db.volumes[0]",
        "belongs to the kernel and Docker",
    ),
    (
        "name: x\nconfiguration:\n  volumes: [/data/../etc]\n",
        "configuration.volumes[0]",
        "not a plain path",
    ),
    (
        "name: x\nconfiguration:\n  volumes: [/etc/resolv.conf]\n",
        "configuration.volumes[0]",
        "written by Docker",
    ),
    (
        "name: x\nconfiguration:\n  volumesFrom: [nope]\n",
        "configuration.volumesFrom[0]",
        "not a dependency",
    ),
    (
        "name: x\nconfiguration:\n  volumesFrom: [service]\n",
        "configuration.volumesFrom[0]",
        "itself",
    ),
    (
        "name: x\nconfiguration:\n  ports: [\"0\"]\n",
        "configuration.ports[0]",
        "out of range",
    ),
    (
        "name: x\nconfiguration:\n  ports: [\"70000\"]\n",
        "configuration.ports[0]",
        "out of range",
    ),
    (
        "name: x\nconfiguration:\n  ports: [\"80:http\"]\n",
        "configuration.ports[0]",
        "not a port",
    ),
    (
        "name: x\nconfiguration:\n  ports: [80, \"8080:80\"]\n",
        "configuration.ports[1]",
        "twice",
    ),
    (
        "name: x\nconfiguration:\n  env: [NOEQUALS]\n",
        "configuration.env[0]",
        "KEY=VALUE",
    ),
    (
        "name: x\nconfiguration:\n  env: [1BAD=x]\n",
        "configuration.env[0]",
        "not a valid variable",
    ),
    (
        "name: x\nconfiguration:\n  env: [A-B=x]\n",
        "configuration.env[0]",
        "not a valid variable",
    ),
    (
        "name: x\nconfiguration:\n  env: [A=1, A=2]\n",
        "configuration.env[1]",
        "twice",
    ),
    (
        "name: x\nconfiguration:\n  env: [MESG_TOKEN=x]\n",
        "configuration.env[0]",
        "set by the node",
    ),
    (
        "name: x\nconfiguration:\n  args: \"--x\"\n",
        "configuration.args",
        "expected a list",
    ),
    (
        "name: x\nconfiguration:\n  command: [a]\n",
        "configuration.command",
        "expected a string",
    ),
    (
        "name: x\ndependencies:\n  db:\n    volumes: [/x]\n",
        "dependencies.db",
        "`image` is required",
    ),
    (
        "name: x\ndependencies:\n  service:\n    image: x\n",
        "dependencies.service",
        "reserved",
    ),
    (
        "name: x\ndependencies:\n  db:\n    image: \"two words\"\n",
        "dependencies.db.image",
        "image reference",
    ),
    (
        "name: x\ndependencies:\n  db:\n    image: x\n    volumesFrom: [db]\n",
        "dependencies.db.volumesFrom[0]",
        "itself",
    ),
    (
        "name: x\ndependencies:\n  \"bad key\":\n    image: x\n",
        "dependencies.bad key",
        "invalid dependency key",
    ),
    ("name: x\ntasks: [a]\n", "tasks", "expected a mapping"),
    (
        "name: x\ntasks:\n  t:\n    input: {}\n",
        "tasks.t.input",
        "did you mean `inputs`",
    ),
    (
        "name: x\ntasks:\n  t: {}\n  t: {}\n",
        "tasks.t",
        "duplicate task",
    ),
    (
        "name: x\ntasks:\n  t:\n    inputs:\n      a:\n        name: A\n",
        "tasks.t.inputs.a",
        "`type` is required",
    ),
    (
        "name: x\ntasks:\n  t:\n    inputs:\n      a:\n        type: string\n",
        "tasks.t.inputs.a.type",
        "did you mean `String`",
    ),
    (
        "name: x\ntasks:\n  t:\n    inputs:\n      a:\n        type: Integer\n",
        "tasks.t.inputs.a.type",
        "unknown type",
    ),
    (
        "name: x\ntasks:\n  t:\n    inputs:\n      a:\n        type: String\n        optional: yes\n",
        "tasks.t.inputs.a.optional",
        "true or false",
    ),
    (
        "name: x\ntasks:\n  t:\n    inputs:\n      a:\n        type: String\n        repeated: 1\n",
        "tasks.t.inputs.a.repeated",
        "true or false",
    ),
    (
        "name: x\ntasks:\n  t:\n    inputs:\n      a:\n        type: String\n        object: {}\n",
        "tasks.t.inputs.a.object",
        "only allowed",
    ),
    (
        "name: x\ntasks:\n  t:\n    outputs:\n      a:\n        type: Object\n        object:\n          b:\n            type: Nope\n",
        "tasks.t.outputs.a.object.b.type",
        "unknown type",
    ),
    (
        "name: x\ntasks:\n  t:\n    outputs:\n      a:\n        type: String\n      a:\n        type: String\n",
        "tasks.t.outputs.a",
        "duplicate parameter",
    ),
    (
        "name: x\ntasks:\n  t:\n    timeout: soon\n",
        "tasks.t.timeout",
        "not a duration",
    ),
    (
        "name: x\ntasks:\n  t:\n    timeout: -1\n",
        "tasks.t.timeout",
        "positive",
    ),
    (
        "name: x\ntasks:\n  t:\n    timeout: 2d\n",
        "tasks.t.timeout",
        "not a duration",
    ),
    (
        "name: x\ntasks:\n  t:\n    timeout: 100000h\n",
        "tasks.t.timeout",
        "24h",
    ),
    (
        "name: x\ntasks:\n  t:\n    price: 2\n",
        "tasks.t.price",
        "expected a mapping of micro-credits",
    ),
    (
        "name: x\ntasks:\n  t:\n    price: {call: -2}\n",
        "tasks.t.price.call",
        "negative",
    ),
    (
        "name: x\ntasks:\n  t:\n    price: {call: cheap}\n",
        "tasks.t.price.call",
        "expected a whole number of micro-credits",
    ),
    (
        "name: x\nevents:\n  e:\n    datas: {}\n",
        "events.e.datas",
        "did you mean `data`",
    ),
    (
        "name: x\nevents:\n  e:\n    data:\n      \"9x\":\n        type: String\n",
        "events.e.data.9x",
        "invalid parameter key",
    ),
    (
        "name: x\nevents:\n  e:\n    name: {a: 1}\n",
        "events.e.name",
        "expected a string",
    ),
    ("name: x\nsid: &a x\n", "", "anchors"),
];

#[test]
fn malformed_definitions_name_the_field_at_fault() {
    assert!(MALFORMED.len() >= 30);
    for (yaml, path, word) in MALFORMED {
        let errors = match ServiceDefinition::from_yaml(yaml) {
            Ok(d) => panic!("accepted {yaml:?} as {d:?}"),
            Err(e) => e.0,
        };
        assert!(
            errors
                .iter()
                .any(|e| e.path == *path && e.to_string().contains(word)),
            "{yaml:?}: expected an error at `{path}` mentioning `{word}`, got:\n{}",
            errors
                .iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}

#[test]
fn all_errors_of_a_file_are_reported_with_lines_and_columns() {
    let yaml = "name: x\nsid: \"NOT OK\"\ntasks:\n  t:\n    inputs:\n      a:\n        type: Strin\n    outputs:\n      b:\n        typo: 1\n";
    let errors = ServiceDefinition::from_yaml(yaml).unwrap_err().0;
    let got: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
    assert_eq!(errors.len(), 4, "{got:#?}");
    assert!(got[0].starts_with("2:6: sid:"), "{}", got[0]);
    assert!(
        got[1].starts_with("7:15: tasks.t.inputs.a.type:"),
        "{}",
        got[1]
    );
    assert!(
        got[2].starts_with("10:9: tasks.t.outputs.b.typo:"),
        "{}",
        got[2]
    );
    assert!(
        got[3].starts_with("10:9: tasks.t.outputs.b: `type` is required"),
        "{}",
        got[3]
    );
}

#[test]
fn the_hash_ignores_key_order_comments_and_quoting() {
    let a = "name: n\ntasks:\n  a:\n    inputs:\n      x: {type: String}\n  b: {}\n";
    let b = "# a comment\ntasks:\n  b: {}\n  \"a\":\n    inputs:\n      x:\n        type: 'String'\nname: \"n\"\n";
    let pkg = PackageHash(Hash32::sha256(b"pkg"));
    let ha = ServiceDefinition::from_yaml(a).unwrap().service_hash(&pkg);
    let hb = ServiceDefinition::from_yaml(b).unwrap().service_hash(&pkg);
    assert_eq!(ha, hb);
    let c = a.replace("String", "Number");
    let hc = ServiceDefinition::from_yaml(&c).unwrap().service_hash(&pkg);
    assert_ne!(ha, hc);
    let other_pkg = PackageHash(Hash32::sha256(b"pkg2"));
    assert_ne!(
        ha,
        ServiceDefinition::from_yaml(a)
            .unwrap()
            .service_hash(&other_pkg)
    );
}

/// Committed vectors: if one of these changes, every service hash in every deployed network
/// changes with it. Change them only with a new hash domain version.
#[test]
fn hash_stability_vectors() {
    let pkg = PackageHash(Hash32::sha256(b"package"));
    let minimal = ServiceDefinition::from_yaml("name: x\n").unwrap();
    assert_eq!(
        String::from_utf8(minimal.canonical_bytes()).unwrap(),
        r#"{"configuration":{"args":[],"command":null,"env":{},"image":null,"ports":[],"volumes":[],"volumesFrom":[]},"dependencies":{},"description":null,"events":{},"name":"x","repository":null,"sid":null,"tasks":{}}"#
    );
    let full = ServiceDefinition::from_yaml(FULL).unwrap();
    // Without a price nor an `economy` section, a definition keeps the hash it had
    // before prices existed (these two were computed then).
    let unpriced_full = ServiceDefinition::from_yaml(
        &FULL
            .replace("    price: {call: 1000, per_ms: 2, per_kib: 5}\n", "")
            .replace("economy:\n  publisher_share_bps: 1000\n", ""),
    )
    .unwrap();
    let task = ServiceDefinition::from_yaml("name: x\ntasks:\n  t: {}\n").unwrap();
    let vectors = [
        (minimal.service_hash(&pkg).to_string(), "MINIMAL"),
        (full.service_hash(&pkg).to_string(), "FULL"),
        (
            unpriced_full.service_hash(&pkg).to_string(),
            "FULL without a price",
        ),
        (task.service_hash(&pkg).to_string(), "a free task"),
    ];
    let expected = [
        "4BD6FSainCV4weV8owEGqqgzpARAGXmEVMe4nQTZXshd",
        "TNQhNKMEGyPxY4eADpAwxWNSbwwk7pMwtchrs9yUkv6",
        "Ccbnd7jSLcU422x2igDFsj6tu4o4mUPdUqAwCipzkFMZ",
        "BGJcDwhroogjMEBWxR5y4vc7dYLqFWfrBvB19EYyUdaF",
    ];
    for ((got, name), want) in vectors.iter().zip(expected) {
        assert_eq!(got, want, "{name} hash changed");
    }
}
