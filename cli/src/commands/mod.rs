//! One module per command group; [`run`] dispatches.

pub mod account;
pub mod attempts;
pub mod context;
pub mod dev;
pub mod events;
pub mod exec;
pub mod executions;
pub mod init;
pub mod ledger;
pub mod network;
pub mod node;
pub mod peers;
pub mod process;
pub mod process_limits;
pub mod receipt_check;
pub mod search;
pub mod service;
pub mod views;
pub mod why;

use crate::args::{
    Command, ExecutionsCommand, Global, NodeCommand, ProcessCommand, ServiceCommand,
};
use crate::client::Client;
use std::cell::OnceCell;
use std::fmt;

/// An error already reported to the user: exit with this code, print nothing more.
#[derive(Debug)]
pub struct Exit(pub u8);

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "exit code {}", self.0)
    }
}

impl std::error::Error for Exit {}

/// What every command gets: the global flags and, when it needs one, the node client.
#[derive(Debug)]
pub struct Ctx {
    pub global: Global,
    client: OnceCell<Client>,
}

impl Ctx {
    pub fn new(global: Global) -> Ctx {
        Ctx {
            global,
            client: OnceCell::new(),
        }
    }

    pub fn json(&self) -> bool {
        self.global.json
    }

    /// The node client, created on first use: commands that do not talk to a node never
    /// fail on a bad --node.
    pub fn client(&self) -> anyhow::Result<&Client> {
        if let Some(c) = self.client.get() {
            return Ok(c);
        }
        let g = &self.global;
        let target = match (&g.node, &g.context) {
            // Nothing to look up: no contexts file is read.
            (Some(node), None) => crate::contexts::Target {
                node: node.clone(),
                token: g.token.clone(),
                node_data_dir: g.node_data_dir.clone(),
                context: None,
            },
            _ => {
                let (_, contexts) = crate::contexts::load_default()?;
                crate::contexts::resolve(
                    &contexts,
                    g.context.as_deref(),
                    g.node.as_deref(),
                    g.token.as_deref(),
                    g.node_data_dir.as_deref(),
                )?
            }
        };
        let c = Client::new(&target.node, target.token)?;
        let c = match (c.token_given(), c.is_loopback()) {
            (false, true) => c.with_local_token(target.node_data_dir)?,
            _ => c,
        };
        Ok(self.client.get_or_init(|| c))
    }
}

pub async fn run(ctx: &Ctx, command: Command) -> anyhow::Result<()> {
    match command {
        Command::Service(cmd) => match cmd {
            ServiceCommand::Init { dir, name, lang } => init::run(&dir, name.as_deref(), lang),
            ServiceCommand::Validate { path } => service::validate(&path),
            ServiceCommand::Deploy {
                dir,
                start,
                env,
                private,
            } => service::deploy_cmd(ctx, &dir, start, &env, private).await,
            ServiceCommand::List { network: false } => service::list(ctx).await,
            ServiceCommand::List { network: true } => network::services(ctx).await,
            ServiceCommand::Search(args) => search::run(ctx, &args).await,
            ServiceCommand::Show { id } => service::show(ctx, &id).await,
            ServiceCommand::Start { id, env } => service::start(ctx, &id, &env).await,
            ServiceCommand::Stop {
                id,
                delete,
                keep_data,
                grace,
            } => service::stop(ctx, &id, delete, keep_data, grace).await,
            ServiceCommand::Delete { id } => service::delete(ctx, &id).await,
            ServiceCommand::Logs { id, follow, tail } => {
                service::logs(ctx, &id, follow, tail).await
            }
            ServiceCommand::Dev { dir, env } => dev::run(ctx, &dir, &env).await,
        },
        Command::Exec(args) => exec::run(ctx, args).await,
        Command::Executions(cmd) => match cmd {
            ExecutionsCommand::List { filter, limit, all } => {
                executions::list(ctx, &filter, limit, all).await
            }
            ExecutionsCommand::Show { id } => executions::show(ctx, &id).await,
            ExecutionsCommand::Watch { filter } => executions::watch(ctx, &filter).await,
            ExecutionsCommand::Cancel { id, reason } => executions::cancel(ctx, &id, reason).await,
            ExecutionsCommand::Verify { id } => executions::verify(ctx, &id).await,
            ExecutionsCommand::Why { id } => why::why(ctx, &id).await,
        },
        Command::Events(args) => events::run(ctx, &args).await,
        Command::Process(cmd) => match cmd {
            ProcessCommand::Create { file, env } => process::create(ctx, &file, &env).await,
            ProcessCommand::Validate { file, env } => process::validate(ctx, &file, &env).await,
            ProcessCommand::List => process::list(ctx).await,
            ProcessCommand::Show { id } => process::show(ctx, &id).await,
            ProcessCommand::Runs { id, limit } => process::runs(ctx, &id, limit).await,
            ProcessCommand::Run { id } => process::run(ctx, &id).await,
            ProcessCommand::Logs { id } => process::logs(ctx, &id).await,
            ProcessCommand::Delete { id } => process::delete(ctx, &id).await,
        },
        Command::Peers { command } => peers::run(ctx, command).await,
        Command::Ledger { command } => ledger::run(ctx, command).await,
        Command::Node(NodeCommand::Info) => node::info(ctx).await,
        Command::Account(cmd) => account::run(ctx, cmd),
        Command::Context(cmd) => context::run(&ctx.global, cmd),
        Command::Completions { shell } => context::completions(shell),
    }
}

/// Print a JSON value for `--json`: pretty, one document.
pub fn print_json(v: &serde_json::Value) {
    crate::output::outln!(
        "{}",
        serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
    );
}
