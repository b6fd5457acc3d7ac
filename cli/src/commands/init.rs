//! `mesg service init`: scaffold a service directory.

use crate::output::{Paint, outln, po};
use anyhow::{Context, bail};
use mesg_protocol::definition::{MAX_NAME_LEN, is_valid_sid};
use std::io::Write;
use std::path::Path;

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

/// Create the service files in `dir`; nothing is written if any of them exists.
pub fn run(dir: &Path, name: Option<&str>) -> anyhow::Result<()> {
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
    let files: Vec<(&str, String)> = vec![
        ("mesg.yml", mesg_yml(&name, sid.as_deref())),
        ("Dockerfile", dockerfile(&bin)),
        (".dockerignore", DOCKERIGNORE.to_string()),
        ("README.md", readme(&name, sid.as_deref(), &bin)),
    ];
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
    outln!("next: build the `{bin}` binary into that directory (see its README.md), then:");
    outln!("  mesg service validate {}", dir.display());
    outln!("  mesg service dev {}", dir.display());
    Ok(())
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
    fn init_refuses_to_overwrite_anything() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("Dockerfile"), "FROM mine").unwrap();
        let err = run(dir.path(), Some("x")).unwrap_err().to_string();
        assert!(err.contains("not overwriting"), "{err}");
        assert!(err.contains("Dockerfile"), "{err}");
        assert!(!dir.path().join("mesg.yml").exists());
        assert_eq!(
            std::fs::read_to_string(dir.path().join("Dockerfile")).unwrap(),
            "FROM mine"
        );
    }
}
