//! `mesg context ...`: named nodes (see [`crate::contexts`]), and `mesg completions SHELL`.

use super::print_json;
use crate::args::Global;
use crate::contexts::{Contexts, NodeContext, load_default};
use crate::output::{errln, outln};
use clap::Subcommand;
use serde_json::json;

#[derive(Debug, Subcommand)]
pub enum ContextCommand {
    /// Add (or replace) a named node: its API URL and, for a remote node, its token.
    #[command(after_help = "Examples:
  mesg context add prod --node http://10.0.0.5:50052 --token \"$PROD_TOKEN\" --use
  mesg context add lab --node http://127.0.0.1:60052 --node-data-dir /tmp/lab
  mesg --context prod peers")]
    ///
    /// Takes the node from the global options: --node URL (required), --token TOKEN (kept
    /// in $MESG_HOME/contexts.json, mode 0600) and, for a node on this machine,
    /// --node-data-dir DIR (where its token is read).
    Add {
        /// Name: letters, digits, `-`, `_`, `.`.
        name: String,
        /// Make it the current context too.
        #[arg(long = "use")]
        make_current: bool,
    },
    /// List the contexts; `*` marks the current one.
    #[command(after_help = "Examples:
  mesg context list
  mesg context list --json | jq -r '.contexts[] | select(.current) | .name'")]
    List,
    /// Make a context the one commands use when no --node or --context is given.
    #[command(after_help = "Examples:
  mesg context use prod
  mesg peers             # now asks prod's node")]
    Use { name: String },
    /// Stop using a current context: commands talk to the local node again.
    #[command(after_help = "Examples:
  mesg context unset")]
    Unset,
    /// Remove a context.
    #[command(after_help = "Examples:
  mesg context remove lab")]
    Remove { name: String },
}

pub fn run(global: &Global, cmd: ContextCommand) -> anyhow::Result<()> {
    let (home, mut contexts) = load_default()?;
    match cmd {
        ContextCommand::Add { name, make_current } => {
            let Some(node) = global.node.clone() else {
                anyhow::bail!(
                    "give the context's node: mesg context add {name} --node URL [--token TOKEN]"
                );
            };
            let replaced = contexts.contexts.contains_key(&name);
            contexts.add(
                &name,
                NodeContext {
                    node,
                    token: global.token.clone(),
                    node_data_dir: global.node_data_dir.clone(),
                },
            )?;
            if make_current {
                contexts.current = Some(name.clone());
            }
            contexts.save(&home)?;
            let verb = if replaced { "replaced" } else { "added" };
            errln!(
                "context `{name}` {verb}{}",
                if make_current { " (current)" } else { "" }
            );
        }
        ContextCommand::List => list(global.json, &contexts),
        ContextCommand::Use { name } => {
            contexts.get(&name)?;
            contexts.current = Some(name.clone());
            contexts.save(&home)?;
            errln!("now using context `{name}`");
        }
        ContextCommand::Unset => {
            contexts.current = None;
            contexts.save(&home)?;
            errln!("no current context: commands talk to the local node unless told otherwise");
        }
        ContextCommand::Remove { name } => {
            contexts.remove(&name)?;
            contexts.save(&home)?;
            errln!("context `{name}` removed");
        }
    }
    Ok(())
}

fn list(json_output: bool, contexts: &Contexts) {
    if json_output {
        let items: Vec<_> = contexts
            .contexts
            .iter()
            .map(|(name, c)| {
                json!({
                    "name": name,
                    "node": c.node,
                    "token": c.token.is_some(),
                    "node_data_dir": c.node_data_dir,
                    "current": contexts.current.as_deref() == Some(name.as_str()),
                })
            })
            .collect();
        print_json(&json!({ "contexts": items }));
        return;
    }
    if contexts.contexts.is_empty() {
        errln!("no contexts yet: add one with `mesg context add NAME --node URL`");
        return;
    }
    outln!("  {:<16} {:<32} {:<6} DATA DIR", "NAME", "NODE", "TOKEN");
    for (name, c) in &contexts.contexts {
        let mark = if contexts.current.as_deref() == Some(name.as_str()) {
            "*"
        } else {
            " "
        };
        outln!(
            "{mark} {:<16} {:<32} {:<6} {}",
            name,
            c.node,
            if c.token.is_some() { "yes" } else { "-" },
            c.node_data_dir
                .as_ref()
                .map(|d| d.display().to_string())
                .unwrap_or_else(|| "-".into())
        );
    }
}

/// Print the completion script of `shell` for `mesg` (a closed pipe is not an error:
/// `mesg completions bash | head` ends quietly).
pub fn completions(shell: clap_complete::Shell) -> anyhow::Result<()> {
    let mut command = <crate::args::Cli as clap::CommandFactory>::command();
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command, "mesg", &mut script);
    match std::io::Write::write_all(&mut std::io::stdout().lock(), &script) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(anyhow::anyhow!("cannot write the completion script: {e}"))
        }
        _ => Ok(()),
    }
}
