//! `mesg service init`: scaffold a service directory.

use crate::output::{Paint, outln, po};
use anyhow::{Context, bail};
use mesg_protocol::definition::{MAX_NAME_LEN, is_valid_sid};
use std::io::Write;
use std::path::Path;

/// The language of a new service (`mesg service init --lang`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Lang {
    /// One static binary FROM scratch, built with the `mesg-sdk` crate (or any language
    /// that makes a static binary).
    #[default]
    Rust,
    /// main.py with the Python SDK copied in as `mesg/`, FROM mesg-runtime-python.
    Python,
    /// main.js with the JavaScript SDK copied in as `mesg/`, FROM mesg-runtime-node.
    Js,
    /// service.sh: plain sh and wget, FROM mesg-runtime-busybox.
    Shell,
}

impl Lang {
    /// The registry-free base image the service builds FROM (none for Rust).
    pub fn base_image(self) -> Option<&'static str> {
        match self {
            Lang::Rust => None,
            Lang::Python => Some("mesg-runtime-python"),
            Lang::Js => Some("mesg-runtime-node"),
            Lang::Shell => Some("mesg-runtime-busybox"),
        }
    }
}

/// The Python SDK (sdk/python/mesg), copied into Python services.
const PYTHON_SDK: &[(&str, &str)] = &[
    (
        "mesg/__init__.py",
        include_str!("../../../sdk/python/mesg/__init__.py"),
    ),
    (
        "mesg/_http.py",
        include_str!("../../../sdk/python/mesg/_http.py"),
    ),
    (
        "mesg/application.py",
        include_str!("../../../sdk/python/mesg/application.py"),
    ),
    (
        "mesg/definition.py",
        include_str!("../../../sdk/python/mesg/definition.py"),
    ),
    (
        "mesg/service.py",
        include_str!("../../../sdk/python/mesg/service.py"),
    ),
    ("mesg/py.typed", ""),
];

/// The JavaScript SDK (sdk/js/src), copied into JavaScript services.
const JS_SDK: &[(&str, &str)] = &[
    (
        "mesg/index.js",
        include_str!("../../../sdk/js/src/index.js"),
    ),
    ("mesg/http.js", include_str!("../../../sdk/js/src/http.js")),
    (
        "mesg/service.js",
        include_str!("../../../sdk/js/src/service.js"),
    ),
    (
        "mesg/application.js",
        include_str!("../../../sdk/js/src/application.js"),
    ),
    (
        "mesg/definition.js",
        include_str!("../../../sdk/js/src/definition.js"),
    ),
];

const PYTHON_MAIN: &str = r#"# A mesg Service in Python: the `hello` task of mesg.yml, which emits `greeted`.
# The SDK is the `mesg` directory beside this file (standard library only; docs/sdks.md).

import logging
import os

from mesg import Service

logging.basicConfig(level=logging.INFO, format="%(message)s")
service = Service.from_env()  # MESG_ENDPOINT, MESG_TOKEN... set by the node
greeting = os.environ.get("GREETING", "Hello")


@service.task("hello")
def hello(task):
    name = task.inputs["name"]
    service.emit("greeted", {"name": name})  # attributed to this execution
    return {"message": f"{greeting}, {name}!"}


# Runs tasks concurrently, reconnects when the node restarts, retries results; checks
# first that every task of mesg.yml has a handler.
service.listen()
"#;

const JS_MAIN: &str = r#"// A mesg Service in JavaScript: the `hello` task of mesg.yml, which emits `greeted`.
// The SDK is the `mesg` directory beside this file (no dependencies; docs/sdks.md).
import { Service } from './mesg/index.js';

const service = Service.fromEnv(); // MESG_ENDPOINT, MESG_TOKEN... set by the node
const greeting = process.env.GREETING ?? 'Hello';

service.task('hello', async (task) => {
  const { name } = task.inputs;
  await service.emit('greeted', { name }); // attributed to this execution
  return { message: `${greeting}, ${name}!` };
});

// Runs tasks concurrently, reconnects when the node restarts, retries results; checks
// first that every task of mesg.yml has a handler.
await service.listen();
"#;

const JS_PACKAGE: &str = r#"{ "private": true, "type": "module" }
"#;

const SHELL_MAIN: &str = r#"#!/bin/sh
# A mesg Service in plain sh with busybox's wget and sed (docs/service-api.md): the
# `hello` task of mesg.yml, which emits `greeted`. No SDK: this is the service API by hand.
auth="Authorization: Bearer $MESG_TOKEN"
json="Content-Type: application/json"
greeting="${GREETING:-Hello}"

post() { # path body
  until wget -q -O /dev/null --header "$auth" --header "$json" --post-data "$2" "$MESG_ENDPOINT$1"; do
    sleep 1 # the node is restarting (or refused: see its log)
  done
}

field() { # line key: the value of a string field without quotes or backslashes
  printf '%s' "$1" | sed -n "s/.*\"$2\":\"\([^\"\\\\]*\)\".*/\1/p"
}

hello() { # execution_id line
  name="$(field "$2" name)"
  post /v1/service/events "{\"event\":\"greeted\",\"data\":{\"name\":\"$name\"},\"execution_id\":\"$1\"}"
  post /v1/service/results "{\"execution_id\":\"$1\",\"outputs\":{\"message\":\"$greeting, $name!\"}}"
}

echo "listening for tasks on $MESG_ENDPOINT"
while true; do
  # One JSON object per line; each task runs in the background.
  wget -q -O - --header "$auth" "$MESG_ENDPOINT/v1/service/tasks" | while IFS= read -r line; do
    case "$line" in
      *'"type":"task"'*)
        id="$(field "$line" execution_id)"
        case "$(field "$line" task)" in
          hello) hello "$id" "$line" & ;;
          *) post /v1/service/results "{\"execution_id\":\"$id\",\"error\":\"unknown task\"}" & ;;
        esac ;;
    esac
  done
  sleep 1 # the stream broke: reconnect
done
"#;

/// A sid from a name: lowercase, runs of other characters become one `-`.
pub fn sid_from_name(name: &str) -> Option<String> {
    let mut sid = String::new();
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            sid.push(c.to_ascii_lowercase());
        } else if !sid.ends_with('-') && !sid.is_empty() {
            sid.push('-');
        }
    }
    let sid = sid.trim_matches('-').to_string();
    let sid: String = sid
        .chars()
        .take(mesg_protocol::definition::MAX_SID_LEN)
        .collect();
    let sid = sid.trim_end_matches('-').to_string();
    is_valid_sid(&sid).then_some(sid)
}

fn yaml_string(s: &str) -> String {
    // A JSON string is a valid YAML double-quoted scalar.
    serde_json::to_string(s).expect("a string serializes")
}

pub fn mesg_yml(name: &str, sid: Option<&str>) -> String {
    let id = sid.unwrap_or("SERVICE");
    let sid_line = match sid {
        Some(s) => format!(
            "# Short name that commands accept instead of the service hash: lowercase letters,\n\
             # digits, `-`, and `.` between labels (e.g. acme.mailer).\n\
             sid: {s}\n"
        ),
        None => "# sid: my-service   # a short name commands accept instead of the hash\n".into(),
    };
    format!(
        r#"# mesg.yml: the definition of a mesg Service.
# Check it with `mesg service validate`; try it with `mesg service dev`.
# Parameter types: String, Number, Boolean, Object, Any. A parameter may add
# `optional: true`, `repeated: true` (a list), and `object:` (the fields of an Object).

name: {name}
{sid_line}description: A new mesg service.

# The main container, built from the Dockerfile in this directory.
configuration:
  # Environment variables with their defaults. Only the ones listed here can be set
  # when an instance starts: mesg service start {id} --env GREETING=Hi
  env:
    - GREETING=Hello

# Tasks: what others can execute on this service. Each takes typed inputs and
# answers typed outputs (or an error).
tasks:
  hello:
    description: Greet someone.
    # An execution of this task fails if it has not answered after this long
    # (default 60s; 500ms, 30s, 2m, 1h work too).
    timeout: 10s
    inputs:
      name:
        type: String
        description: Who to greet.
    outputs:
      message:
        type: String
        description: The greeting.

# Events: what this service emits for others to react to.
events:
  greeted:
    description: Emitted after each greeting.
    data:
      name:
        type: String
"#,
        name = yaml_string(name),
    )
}

pub fn dockerfile(bin: &str) -> String {
    format!(
        r#"# The service's image: nothing but one static binary (see README.md to build it).
# mesg builds this on the node; there is no image registry involved.
FROM scratch
COPY {bin} /{bin}
ENTRYPOINT ["/{bin}"]
"#
    )
}

/// The Dockerfile of a Python, JavaScript or shell service.
pub fn script_dockerfile(lang: Lang) -> String {
    let (image, entry) = match lang {
        Lang::Python => (
            "mesg-runtime-python:3.11",
            r#"["/usr/local/bin/python3", "/service/main.py"]"#,
        ),
        Lang::Js => (
            "mesg-runtime-node:20",
            r#"["/usr/local/bin/node", "/service/main.js"]"#,
        ),
        Lang::Shell | Lang::Rust => (
            "mesg-runtime-busybox:1",
            r#"["/bin/sh", "/service/service.sh"]"#,
        ),
    };
    let repo = image.split(':').next().unwrap_or(image);
    format!(
        r#"# The service's image, built on the node without any registry. {repo} is a
# FROM-scratch image made on the node's machine from its own interpreter (see README.md);
# the node must allow it: mesg-node --allow-image {repo}
FROM {image}
COPY . /service
WORKDIR /service
ENTRYPOINT {entry}
"#
    )
}

pub fn script_readme(name: &str, sid: Option<&str>, lang: Lang) -> String {
    let id = sid.unwrap_or("SERVICE_HASH");
    let (what, file, base) = match lang {
        Lang::Python => ("Python (3.11, standard library only)", "main.py", "python"),
        Lang::Js => ("JavaScript (Node 20, no dependencies)", "main.js", "node"),
        Lang::Shell | Lang::Rust => (
            "plain sh with busybox's wget and sed",
            "service.sh",
            "busybox",
        ),
    };
    let sdk = match lang {
        Lang::Python => {
            "\nThe `mesg` directory is the Python SDK (sdk/python in the mesg repository),\ncopied here so that the image needs no package index; docs/sdks.md documents it.\n"
        }
        Lang::Js => {
            "\nThe `mesg` directory is the JavaScript SDK (sdk/js/src in the mesg repository),\ncopied here so that the image needs no package registry; docs/sdks.md documents it.\n"
        }
        _ => {
            "\nNo SDK: `service.sh` speaks the node's service API (docs/service-api.md) with wget.\n"
        }
    };
    format!(
        r#"# {name}

A mesg Service in {what}: `mesg.yml` declares its tasks and events, `{file}`
implements them, the `Dockerfile` builds its image.
{sdk}
## The base image

The image builds `FROM mesg-runtime-{base}`, which no registry serves: it is assembled on
the node's machine from that machine's own files by `testnet/images/runtime-bases.sh
{base}` (in the mesg repository; docs/sdks.md says how, and how to make one from Debian
packages). A node builds only FROM images it built itself or that its operator allowed,
so start the node with

```sh
mesg-node --allow-image mesg-runtime-{base}     # or MESG_ALLOW_IMAGES=mesg-runtime-{base}
```

## Run

```sh
mesg service validate                  # check mesg.yml
mesg service dev                       # deploy, start, follow logs, events and executions
mesg exec {id} hello -d name=Ada --wait   # in another terminal
```
"#
    )
}

pub const DOCKERIGNORE: &str = r#"# Left out of the service package: the build context that mesg hashes, sends to the
# node and builds the image from. The image needs only mesg.yml, the Dockerfile and the
# binary; mesg.yml and the Dockerfile are always included.
.git
target
src
Cargo.toml
Cargo.lock
*.md
"#;

pub fn readme(name: &str, sid: Option<&str>, bin: &str) -> String {
    let id = sid.unwrap_or("SERVICE_HASH");
    format!(
        r#"# {name}

A mesg Service: `mesg.yml` declares its tasks and events, the `Dockerfile` packs one
static binary into an image `FROM scratch`.

## Build the binary

The image has no libc and no shell, so the binary must be static. With Rust and the
`mesg-sdk` crate (glibc, statically linked; keep `--target` so that build scripts stay
dynamic):

```sh
RUSTFLAGS='-C target-feature=+crt-static' \
  cargo build --release --target x86_64-unknown-linux-gnu
cp target/x86_64-unknown-linux-gnu/release/{bin} .
```

Any language works as long as the result is one static file named `{bin}` here, e.g.
Go: `CGO_ENABLED=0 go build -o {bin} .`

A minimal implementation of `hello` with `mesg-sdk`:

```rust
#[tokio::main]
async fn main() -> Result<(), mesg_sdk::SdkError> {{
    let service = mesg_sdk::Service::from_env()?;
    let greeting = std::env::var("GREETING").unwrap_or_else(|_| "Hello".into());
    let emitter = service.clone();
    service
        .listen(move |task: mesg_sdk::Task| {{
            let (greeting, emitter) = (greeting.clone(), emitter.clone());
            async move {{
                let name = task.inputs["name"].as_str().unwrap_or("world").to_string();
                let _ = emitter.emit("greeted", serde_json::json!({{ "name": name }})).await;
                Ok(serde_json::json!({{ "message": format!("{{greeting}}, {{name}}!") }}))
            }}
        }})
        .await
}}
```

Without the SDK, speak the node's service API (HTTP + JSON, see docs/service-api.md):
the container gets `MESG_ENDPOINT`, `MESG_TOKEN`, `MESG_SERVICE_HASH` and
`MESG_INSTANCE_HASH`.

## Run

```sh
mesg service validate                  # check mesg.yml
mesg service dev                       # deploy, start, follow logs, events and executions
mesg exec {id} hello -d name=Ada --wait   # in another terminal
```
"#
    )
}

/// Create the service files in `dir` for `lang`; nothing is written if any of them exists.
pub fn run(dir: &Path, name: Option<&str>, lang: Lang) -> anyhow::Result<()> {
    let name = match name {
        Some(n) => n.trim().to_string(),
        None => {
            let abs = std::fs::canonicalize(dir)
                .or_else(|_| std::path::absolute(dir))
                .with_context(|| format!("cannot resolve {}", dir.display()))?;
            abs.file_name()
                .and_then(|s| s.to_str())
                .unwrap_or("my-service")
                .to_string()
        }
    };
    if name.is_empty() || name.len() > MAX_NAME_LEN || name.chars().any(char::is_control) {
        bail!(
            "`{name}` cannot be a service name: use 1 to {MAX_NAME_LEN} printable characters (--name)"
        );
    }
    let sid = sid_from_name(&name);
    let bin = sid
        .clone()
        .unwrap_or_else(|| "service".into())
        .replace('.', "-");
    let files = files(&name, sid.as_deref(), &bin, lang);
    let existing: Vec<String> = files
        .iter()
        .map(|(f, _)| dir.join(f))
        .filter(|p| p.symlink_metadata().is_ok())
        .map(|p| p.display().to_string())
        .collect();
    if !existing.is_empty() {
        bail!(
            "not overwriting existing files: {}; pick an empty directory (mesg service init DIR)",
            existing.join(", ")
        );
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    for (file, content) in &files {
        let path = dir.join(file);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        // create_new: a file that appeared since the check above is not overwritten either.
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        f.write_all(content.as_bytes())
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    outln!(
        "{} service {} in {}: {}",
        po(Paint::Green, "created"),
        name,
        dir.display(),
        files.iter().map(|(f, _)| *f).collect::<Vec<_>>().join(", ")
    );
    match lang.base_image() {
        None => {
            outln!("next: build the `{bin}` binary into that directory (see its README.md), then:")
        }
        Some(base) => outln!(
            "next: the image builds FROM {base}: make it on the node's machine (testnet/images/runtime-bases.sh) and start the node with --allow-image {base} (see its README.md), then:"
        ),
    }
    outln!("  mesg service validate {}", dir.display());
    outln!("  mesg service dev {}", dir.display());
    Ok(())
}

/// Every file of a new service in `lang`, by path relative to its directory.
pub fn files(name: &str, sid: Option<&str>, bin: &str, lang: Lang) -> Vec<(&'static str, String)> {
    let mut files: Vec<(&'static str, String)> = vec![("mesg.yml", mesg_yml(name, sid))];
    match lang {
        Lang::Rust => {
            files.push(("Dockerfile", dockerfile(bin)));
            files.push((".dockerignore", DOCKERIGNORE.to_string()));
            files.push(("README.md", readme(name, sid, bin)));
        }
        Lang::Python => {
            files.push(("Dockerfile", script_dockerfile(lang)));
            files.push((".dockerignore", ".git\n__pycache__\n*.pyc\n*.md\n".into()));
            files.push(("README.md", script_readme(name, sid, lang)));
            files.push(("main.py", PYTHON_MAIN.to_string()));
            files.extend(PYTHON_SDK.iter().map(|(p, c)| (*p, c.to_string())));
        }
        Lang::Js => {
            files.push(("Dockerfile", script_dockerfile(lang)));
            files.push((".dockerignore", ".git\nnode_modules\n*.md\n".into()));
            files.push(("README.md", script_readme(name, sid, lang)));
            files.push(("main.js", JS_MAIN.to_string()));
            files.push(("package.json", JS_PACKAGE.to_string()));
            files.extend(JS_SDK.iter().map(|(p, c)| (*p, c.to_string())));
        }
        Lang::Shell => {
            files.push(("Dockerfile", script_dockerfile(lang)));
            files.push((".dockerignore", ".git\n*.md\n".into()));
            files.push(("README.md", script_readme(name, sid, lang)));
            files.push(("service.sh", SHELL_MAIN.to_string()));
        }
    }
    files
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sids_derive_from_names() {
        assert_eq!(sid_from_name("Hello World").as_deref(), Some("hello-world"));
        assert_eq!(sid_from_name("  my__svc!! ").as_deref(), Some("my-svc"));
        assert_eq!(sid_from_name("échos").as_deref(), Some("chos"));
        assert_eq!(sid_from_name("!!!"), None);
    }

    #[test]
    fn templates_are_valid_definitions() {
        for (name, sid) in [
            ("Hello", Some("hello")),
            ("Tricky: \"quotes\" # and hash", None),
        ] {
            let def = mesg_protocol::ServiceDefinition::from_yaml(&mesg_yml(name, sid))
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(def.name, name);
            assert_eq!(def.sid.as_deref(), sid);
            assert_eq!(def.tasks.keys().collect::<Vec<_>>(), vec!["hello"]);
            assert_eq!(def.events.keys().collect::<Vec<_>>(), vec!["greeted"]);
            assert_eq!(def.tasks["hello"].timeout_ms, Some(10_000));
        }
    }

    #[test]
    fn every_language_scaffolds_a_valid_service() {
        for lang in [Lang::Rust, Lang::Python, Lang::Js, Lang::Shell] {
            let dir = tempfile::tempdir().unwrap();
            let svc = dir.path().join("hello");
            run(&svc, Some("Hello"), lang).unwrap();
            let def = mesg_protocol::ServiceDefinition::from_yaml(
                &std::fs::read_to_string(svc.join("mesg.yml")).unwrap(),
            )
            .unwrap();
            assert_eq!(def.tasks.keys().collect::<Vec<_>>(), vec!["hello"]);
            let dockerfile = std::fs::read_to_string(svc.join("Dockerfile")).unwrap();
            match lang.base_image() {
                None => assert!(dockerfile.contains("FROM scratch")),
                Some(base) => assert!(
                    dockerfile.contains(&format!("FROM {base}:")),
                    "{dockerfile}"
                ),
            }
            // The program parses, where its interpreter is on this machine.
            let check: Option<(&str, Vec<&str>, &str)> = match lang {
                Lang::Rust => None,
                Lang::Python => Some(("python3", vec!["-m", "py_compile"], "main.py")),
                Lang::Js => Some(("node", vec!["--check"], "main.js")),
                Lang::Shell => Some(("sh", vec!["-n"], "service.sh")),
            };
            if let Some((cmd, args, file)) = check
                && let Ok(out) = std::process::Command::new(cmd)
                    .args(&args)
                    .arg(svc.join(file))
                    .env("PYTHONDONTWRITEBYTECODE", "1")
                    .output()
            {
                assert!(
                    out.status.success(),
                    "{cmd} {file}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
    }

    #[test]
    fn python_and_js_services_carry_the_sdk_and_check_their_handlers() {
        let dir = tempfile::tempdir().unwrap();
        let py = dir.path().join("py");
        run(&py, Some("py"), Lang::Python).unwrap();
        for (path, content) in PYTHON_SDK {
            assert_eq!(&std::fs::read_to_string(py.join(path)).unwrap(), content);
        }
        // The SDK's own reader finds the template's task, so its handler check passes.
        if let Ok(out) = std::process::Command::new("python3")
            .current_dir(&py)
            .args([
                "-B",
                "-c",
                "from mesg import read_definition; print(read_definition('mesg.yml').tasks)",
            ])
            .output()
        {
            assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "['hello']");
        }
        let js = dir.path().join("js");
        run(&js, Some("js"), Lang::Js).unwrap();
        for (path, content) in JS_SDK {
            assert_eq!(&std::fs::read_to_string(js.join(path)).unwrap(), content);
        }
    }

    #[test]
    fn init_refuses_to_overwrite_anything() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("Dockerfile"), "FROM mine").unwrap();
        let err = run(dir.path(), Some("x"), Lang::Rust)
            .unwrap_err()
            .to_string();
        assert!(err.contains("not overwriting"), "{err}");
        assert!(err.contains("Dockerfile"), "{err}");
        assert!(!dir.path().join("mesg.yml").exists());
        assert_eq!(
            std::fs::read_to_string(dir.path().join("Dockerfile")).unwrap(),
            "FROM mine"
        );
    }
}
