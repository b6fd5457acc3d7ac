//! Command-line arguments: every command, flag and its help.

use crate::inputs;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

fn env_pair(s: &str) -> Result<(String, String), String> {
    inputs::parse_env_arg(s)
}

fn timeout(s: &str) -> Result<u64, String> {
    inputs::parse_timeout_ms(s)
}

fn status(s: &str) -> Result<String, String> {
    mesg_protocol::ExecutionStatus::parse(s)
        .map(|st| st.as_str().to_string())
        .ok_or_else(|| {
            format!("`{s}` is not a status: use Created, InProgress, Completed or Failed")
        })
}

/// A service, instance or execution id typed by a user.
fn id(s: &str) -> Result<String, String> {
    let t = s.trim();
    if t.is_empty() || t == "." || t == ".." {
        return Err(format!(
            "`{s}` is not an id: give a sid (e.g. echo) or a hash"
        ));
    }
    Ok(t.to_string())
}

fn execution_id(s: &str) -> Result<String, String> {
    s.parse::<mesg_protocol::ExecutionId>()
        .map(|id| id.to_string())
}

/// mesg: deploy Services, execute their tasks and watch their events on a mesg node.
///
/// Every command that talks to a node uses --node (default http://127.0.0.1:50052, the
/// address `mesg-node` listens on); `mesg node info` checks that one answers.
#[derive(Debug, Parser)]
#[command(
    name = "mesg",
    version,
    about,
    long_about,
    after_help = "Examples:
  mesg node info
  mesg service init hello && mesg service validate hello
  mesg service deploy ./hello --start
  mesg exec hello hello -d name=World --wait
  mesg executions list --status Failed
  mesg events --service hello
  mesg process create pipeline.yml && mesg process logs my-pipeline
  mesg peers"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Flags every command accepts.
#[derive(Debug, Args)]
pub struct Global {
    /// Base URL of the node's Application API, e.g. http://127.0.0.1:50052 or
    /// http://10.0.0.5:50052.
    /// [default: the --context's node, else http://127.0.0.1:50052]
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        env = "MESG_NODE",
        value_name = "URL"
    )]
    pub node: Option<String>,
    /// Talk to this named node (see `mesg context`); --node, --token and --node-data-dir
    /// override its fields. [default: the current context, if one is set]
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        env = "MESG_CONTEXT",
        value_name = "NAME"
    )]
    pub context: Option<String>,
    /// API token, sent as `Authorization: Bearer TOKEN`. Every node requires one. Unset,
    /// for a node on this machine (a loopback --node), mesg reads the token the node
    /// generated in its data dir (see --node-data-dir).
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        env = "MESG_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,
    /// The data dir of the local node (mesg-node --data-dir), where mesg finds its API
    /// token (DIR/api.token) when --token is not given. [default: ~/.mesg]
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        env = "MESG_DATA_DIR",
        value_name = "DIR"
    )]
    pub node_data_dir: Option<std::path::PathBuf>,
    /// Print the node's JSON answers instead of tables and summaries (one JSON document,
    /// or one JSON object per line for streams), for scripts and `jq`.
    #[arg(long, global = true, help_heading = "Global options")]
    pub json: bool,
    /// Sign executions with this account's key (see `mesg account`) instead of letting
    /// the node sign them, e.g. --account default.
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        env = "MESG_ACCOUNT",
        value_name = "NAME"
    )]
    pub account: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create, check, deploy and run Services.
    #[command(subcommand)]
    Service(ServiceCommand),
    /// Execute a task of a Service and print the execution id (and, with --wait, its
    /// result).
    ///
    /// The service is a sid (`echo`) or a service hash. Inputs come from --input (a JSON
    /// object) or from -d key=value pairs: values that parse as JSON are JSON (numbers,
    /// true/false, null, objects, arrays, "quoted strings"), anything else is a string;
    /// dotted keys nest (-d user.name=Ada gives {"user":{"name":"Ada"}}).
    ///
    /// By default the node signs the request. With --account NAME (or MESG_ACCOUNT) the
    /// CLI builds the request itself and signs it with that account's key, so that the
    /// execution's requester is the account.
    ///
    /// Exit code: 0 when created (or, with --wait, completed); 1 on an error or when the
    /// awaited execution failed.
    #[command(after_help = "Examples:
  mesg exec echo echo -d message=hi --wait
  mesg exec echo sleep -d ms=2000 --timeout 5s
  mesg exec echo echo --input '{\"data\":{\"a\":[1,2]}}' --wait --json
  mesg exec echo echo -d data.user.age=36 -d data.user.name=Ada --tag demo
  mesg exec calc sum -d a=2 -d b=3 --verify 2/3 --wait
  mesg --account default exec echo echo -d message=signed --wait")]
    Exec(ExecArgs),
    /// List, inspect, follow and verify executions.
    #[command(subcommand)]
    Executions(ExecutionsCommand),
    /// Follow events as Services emit them (Ctrl-C to stop).
    ///
    /// One line per event: time (UTC), service, event key and data. With --json, one
    /// Event JSON object per line.
    #[command(after_help = "Examples:
  mesg events
  mesg events --service echo --event tick
  mesg events --recent 20
  mesg events --json | jq .data")]
    Events(EventsArgs),
    /// Create, check and follow processes: Applications declared in YAML that the node
    /// runs for you (a trigger, then steps that filter, map and execute tasks anywhere in
    /// the network). The format is in docs/processes.md.
    #[command(subcommand)]
    Process(ProcessCommand),
    /// The peers this node is connected to, the nodes it knows from their signed
    /// announcements (what they run, how busy they are, their round-trip time), the
    /// reputation it keeps of the peers it used, and bans.
    ///
    /// A node joins a network with `mesg-node --bootstrap ADDR`; `mesg node info` prints
    /// the addresses others can bootstrap from.
    #[command(after_help = "Examples:
  mesg peers
  mesg peers ban PEER_KEY --reason 'wrong outputs'
  mesg peers unban PEER_KEY")]
    Peers {
        #[command(subcommand)]
        command: Option<crate::commands::peers::PeersCommand>,
    },
    /// About the node.
    #[command(subcommand)]
    Node(NodeCommand),
    /// The economy's books of this node: what each peer owes it or is owed (µc), the
    /// signed log, credit limits, settlement (docs/economy.md).
    #[command(after_help = "Examples:
  mesg ledger
  mesg ledger log --limit 20
  mesg ledger limit PEER_KEY 5000000
  mesg ledger settle PEER_KEY")]
    Ledger {
        #[command(subcommand)]
        command: Option<crate::commands::ledger::LedgerCommand>,
    },
    /// Manage the CLI's accounts: ed25519 keys that sign executions (see --account).
    ///
    /// Keys live in $MESG_HOME/accounts/NAME.key (MESG_HOME defaults to ~/.mesg-cli),
    /// readable by their owner only.
    #[command(subcommand)]
    Account(AccountCommand),
    /// Named nodes to talk to, as docker and kubectl contexts: add one with its URL and
    /// token, then `mesg --context NAME ...` or `mesg context use NAME`.
    ///
    /// Kept in $MESG_HOME/contexts.json (MESG_HOME defaults to ~/.mesg-cli), readable by
    /// its owner only. --node, --token and --node-data-dir always win over a context.
    #[command(subcommand)]
    Context(crate::commands::context::ContextCommand),
    /// Print a shell completion script.
    #[command(after_help = "Examples:
  mesg completions bash > ~/.local/share/bash-completion/completions/mesg
  mesg completions zsh > \"${fpath[1]}/_mesg\"
  mesg completions fish > ~/.config/fish/completions/mesg.fish")]
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Subcommand)]
pub enum ServiceCommand {
    /// Create a new service directory: a commented mesg.yml with one task and one event,
    /// a Dockerfile FROM scratch, a .dockerignore and a README.md on building the binary
    /// (with --lang python, js or shell: a program in that language instead).
    ///
    /// Existing files are never overwritten: if any of them exists, nothing is written.
    #[command(after_help = "Examples:
  mesg service init hello
  mesg service init services/mailer --name \"Mailer\"
  mesg service init hello-py --lang python
  mesg service init          # in the current directory")]
    Init {
        /// Directory to create the service in (created if missing).
        #[arg(default_value = ".")]
        dir: PathBuf,
        /// Name of the service (default: the directory's name). Its sid is derived from
        /// it: lowercase letters, digits and dashes.
        #[arg(long)]
        name: Option<String>,
        /// Language: rust (a static binary FROM scratch), python or js (the SDK copied
        /// into the directory), shell (sh and wget). Python, js and shell build FROM a
        /// base image made on the node's machine (docs/sdks.md).
        #[arg(long, value_enum, default_value_t = crate::commands::init::Lang::Rust)]
        lang: crate::commands::init::Lang,
    },
    /// Check a service definition (a directory with mesg.yml, or the file itself) and
    /// print every error with its line and column, or a summary of a valid one with its
    /// service hash.
    ///
    /// Exit code: 0 when valid, 1 when invalid, 2 when the file cannot be read.
    #[command(after_help = "Examples:
  mesg service validate
  mesg service validate ./hello
  mesg service validate ./hello/mesg.yml")]
    Validate {
        /// Service directory or mesg.yml file.
        #[arg(default_value = ".")]
        path: PathBuf,
    },
    /// Deploy a service directory to the node: package it (honouring .dockerignore),
    /// send it, build its image, and print its service hash.
    ///
    /// The definition is checked locally first, with every error and its position. The
    /// node's build output is shown as it comes.
    ///
    /// With --account NAME the account publishes the service's sid (signs a claim that
    /// other nodes verify before they resolve the sid to this service); without it, the
    /// node's key does.
    #[command(after_help = "Examples:
  mesg service deploy
  mesg --account default service deploy ./hello
  mesg service deploy ./hello
  mesg service deploy ./echo --start --env TICK_INTERVAL_MS=1000
  mesg service deploy ./secret-sauce --private
  mesg service deploy ./hello --json | jq -r .hash")]
    Deploy {
        /// Service directory (with mesg.yml and Dockerfile).
        #[arg(default_value = ".")]
        dir: PathBuf,
        /// Also start an instance of the service once it is deployed.
        #[arg(long)]
        start: bool,
        /// With --start: set an environment variable declared in the mesg.yml
        /// (configuration.env) for the instance; repeatable.
        #[arg(long = "env", value_name = "KEY=VALUE", value_parser = env_pair, requires = "start")]
        env: Vec<(String, String)>,
        /// Keep the package on the node: it is never served to peers (by default any peer
        /// of the network can fetch the package, i.e. the whole directory minus what
        /// .dockerignore excludes, to run the service itself).
        #[arg(long)]
        private: bool,
    },
    /// List the services the node knows, with their instances; with --network, the
    /// services other nodes of the network run, with their providers.
    #[command(after_help = "Examples:
  mesg service list
  mesg service list --json
  mesg service list --network
  mesg service list --network --json | jq '.services[].sid'")]
    List {
        /// List what the network runs instead (from the nodes' announcements, renewed every
        /// 5 s) and this node's own instances: each service with the nodes that provide it
        /// and their load.
        #[arg(long)]
        network: bool,
    },
    /// Search the catalogue of the network: the services this node and the nodes it hears
    /// run, one row per task, with its price per call, the sid's publisher, the number of
    /// providers and their load (executions in flight they announce).
    ///
    /// From the nodes' signed announcements (renewed every 5 s) and the services'
    /// records, fetched from the network and checked against their hash when the node
    /// does not have them: a service whose record has not arrived yet is listed with
    /// "(definition not fetched yet)", and --task or --max-price leave it out. All the
    /// filters apply together. With --json, the node's answer (every price part, every
    /// publisher and provider).
    #[command(after_help = "Examples:
  mesg service search
  mesg service search echo
  mesg service search --task resize --max-price 5000
  mesg service search --publisher 7Hq3xYz1
  mesg service search ech --json | jq '.services[].providers'")]
    Search(crate::commands::search::SearchArgs),
    /// Show one service: its tasks with their input and output types, its events, and
    /// its instances on this node.
    ///
    /// Types read `name: Type`; `name?` is optional, `[Type]` is repeated, `{...}` lists
    /// an object's fields.
    #[command(after_help = "Examples:
  mesg service show echo
  mesg service show 5Hq3...   # a service hash")]
    Show {
        /// Service sid or hash.
        #[arg(value_parser = id)]
        id: String,
    },
    /// Start an instance of a deployed service.
    ///
    /// The instance is identified by the service and its env: starting the same service
    /// with the same env again starts that instance again.
    #[command(after_help = "Examples:
  mesg service start echo
  mesg service start echo --env TICK_INTERVAL_MS=500")]
    Start {
        /// Service sid or hash.
        #[arg(value_parser = id)]
        id: String,
        /// Set an environment variable declared in the mesg.yml (configuration.env);
        /// repeatable.
        #[arg(long = "env", value_name = "KEY=VALUE", value_parser = env_pair)]
        env: Vec<(String, String)>,
    },
    /// Stop an instance (its containers are kept), or remove it with --delete.
    #[command(after_help = "Examples:
  mesg service stop echo
  mesg service stop echo --delete              # also remove containers and data
  mesg service stop echo --delete --keep-data  # remove containers, keep volumes
  mesg service stop 7xKf... --grace 1000       # an instance hash")]
    Stop {
        /// Instance hash, or the sid or hash of a service with a single instance.
        #[arg(value_parser = id)]
        id: String,
        /// Then remove the instance: its containers, network and (unless --keep-data)
        /// its volumes.
        #[arg(long)]
        delete: bool,
        /// With --delete: keep the instance's volumes (its data).
        #[arg(long, requires = "delete")]
        keep_data: bool,
        /// Milliseconds between SIGTERM and SIGKILL (the node's default is 10000).
        #[arg(long, value_name = "MS")]
        grace: Option<u64>,
    },
    /// Forget a deployed service. Refused while it has instances (stop them with
    /// `mesg service stop ID --delete` first).
    #[command(after_help = "Examples:
  mesg service delete echo")]
    Delete {
        /// Service sid or hash.
        #[arg(value_parser = id)]
        id: String,
    },
    /// Print the output of an instance's containers, each line prefixed with the
    /// container's key (`service` or a dependency key); stderr lines are red on a
    /// terminal.
    #[command(after_help = "Examples:
  mesg service logs echo
  mesg service logs echo --follow --tail 20
  mesg service logs echo --json")]
    Logs {
        /// Instance hash, or the sid or hash of a service with a single instance.
        #[arg(value_parser = id)]
        id: String,
        /// Keep printing new lines as they come (Ctrl-C to stop).
        #[arg(long, short = 'f')]
        follow: bool,
        /// Only the last N lines of history of each container.
        #[arg(long, value_name = "N")]
        tail: Option<usize>,
    },
    /// Develop a service: deploy it, start an instance, then print its logs, its events
    /// and the updates of its executions as they happen, until Ctrl-C; then stop and
    /// remove the instance (its data volumes are kept).
    #[command(after_help = "Examples:
  mesg service dev
  mesg service dev ./echo --env TICK_INTERVAL_MS=1000
  # in another terminal:
  mesg exec echo echo -d message=hi")]
    Dev {
        /// Service directory (with mesg.yml and Dockerfile).
        #[arg(default_value = ".")]
        dir: PathBuf,
        /// Set an environment variable declared in the mesg.yml (configuration.env);
        /// repeatable.
        #[arg(long = "env", value_name = "KEY=VALUE", value_parser = env_pair)]
        env: Vec<(String, String)>,
    },
}

#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Service sid, sid@PUBLISHER_KEY (a sid runs only services of the publisher it is
    /// pinned to; when several publishers announce it, choose one this way), or hash.
    #[arg(value_parser = id)]
    pub service: String,
    /// Task key (see `mesg service show SERVICE`).
    pub task: String,
    /// All inputs as one JSON object, `@FILE` to read it from a file, or `-` for stdin.
    #[arg(long, short = 'i', value_name = "JSON", conflicts_with = "data")]
    pub input: Option<String>,
    /// One input as key=value; repeatable. JSON values are parsed (3, true, {"a":1},
    /// "quoted"), others are strings; a.b=1 nests.
    #[arg(short = 'd', long = "data", value_name = "KEY=VALUE")]
    pub data: Vec<String>,
    /// Wait for the execution to end and print its outputs (or its error).
    #[arg(long, short = 'w')]
    pub wait: bool,
    /// Tag the execution (filter on it with `mesg executions list --tag`); repeatable.
    #[arg(long = "tag", value_name = "TAG")]
    pub tags: Vec<String>,
    /// Fail the execution if it has not ended after this long: milliseconds (1500) or
    /// with a unit (500ms, 30s, 2m, 1h). Default: the task's `timeout` in the mesg.yml,
    /// else 60s.
    #[arg(long, value_name = "MS", value_parser = timeout)]
    pub timeout: Option<u64>,
    /// Id of the execution that caused this one (links them in `mesg executions`).
    #[arg(long, value_name = "ID", value_parser = execution_id)]
    pub parent: Option<String>,
    /// Make a retry safe: the same key and request answer the execution the key already
    /// names (nothing runs twice), on this node or, with --account, on any node that saw
    /// it; the same key with other inputs is refused. 1 to 255 printable characters, e.g.
    /// an order number or a UUID. Keys live 24 h on a node by default (--idempotency-ttl).
    #[arg(long, value_name = "KEY", value_parser = idempotency_key)]
    pub idempotency_key: Option<String>,
    /// The most this execution may cost, in micro-credits (1 credit = 1,000,000):
    /// required by a priced task (`mesg service show` prints its price) and at least its
    /// per-call price; the executor charges at most this. Signed into the request.
    #[arg(long, value_name = "MICRO_CREDITS")]
    pub max_price: Option<u64>,
    /// k-of-n verification of a deterministic task: QUORUM/REPLICAS (`2/3`: 2 of 3
    /// distinct executors must agree) or QUORUM/REPLICAS/MAX_TOTAL (`2/3/5`: at most 5
    /// executors in all when results disagree). Default: the task's `verify` in its
    /// mesg.yml. Signed into the request.
    #[arg(long, value_name = "K/N[/MAX]", value_parser = verify_spec)]
    pub verify: Option<mesg_protocol::verification::VerifySpec>,
}

fn verify_spec(s: &str) -> Result<mesg_protocol::verification::VerifySpec, String> {
    s.parse()
        .map_err(|e: mesg_protocol::verification::VerifySpecError| e.to_string())
}

fn idempotency_key(s: &str) -> Result<String, String> {
    mesg_protocol::control::check_idempotency_key(s).map_err(|e| e.to_string())?;
    Ok(s.to_string())
}

/// Filters of executions, shared by `list` and `watch`.
#[derive(Debug, Args, Clone, Default)]
pub struct ExecutionFilter {
    /// Only executions with this status: Created, InProgress, Completed or Failed.
    #[arg(long, value_name = "STATUS", value_parser = status)]
    pub status: Option<String>,
    /// Only executions of this service (sid or hash).
    #[arg(long, value_name = "ID")]
    pub service: Option<String>,
    /// Only executions carrying this tag.
    #[arg(long, value_name = "TAG")]
    pub tag: Option<String>,
    /// Only executions of this task key.
    #[arg(long, value_name = "KEY")]
    pub task: Option<String>,
    /// Only executions whose parent is this execution id.
    #[arg(long, value_name = "ID", value_parser = execution_id)]
    pub parent: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum ExecutionsCommand {
    /// List executions, newest first: id, service, task, status, age and duration.
    #[command(after_help = "Examples:
  mesg executions list
  mesg executions list --status Failed --service echo
  mesg executions list --tag demo --limit 10
  mesg executions list --all --json | jq '.executions | length'")]
    List {
        #[command(flatten)]
        filter: ExecutionFilter,
        /// Page size: at most N executions per request (1-1000; the node's default is
        /// 100).
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1000))]
        limit: Option<u32>,
        /// Fetch every page, not only the first.
        #[arg(long)]
        all: bool,
    },
    /// Show one execution: everything about it, with its inputs and outputs.
    ///
    /// A verified execution (`mesg exec --verify 2/3`) also shows each executor asked,
    /// its verdict (agreed, disagreed, timed out, failed, cancelled) and the decision.
    ///
    /// ID is the full id or a unique prefix of a recent one (as `list` shows).
    #[command(after_help = "Examples:
  mesg executions show 3f2a9c1e
  mesg executions show 3f2a9c1e0b7d4e2f8a6c5b4d3e2f1a0b --json")]
    Show {
        /// Execution id, or a unique prefix of it.
        #[arg(value_parser = id)]
        id: String,
    },
    /// Print every change of the matching executions as it happens (Ctrl-C to stop).
    #[command(after_help = "Examples:
  mesg executions watch
  mesg executions watch --service echo --status Failed
  mesg executions watch --json")]
    Watch {
        #[command(flatten)]
        filter: ExecutionFilter,
    },
    /// Ask an execution that has not ended to stop; it ends Failed with the reason.
    #[command(after_help = "Examples:
  mesg executions cancel 3f2a9c1e --reason \"wrong input\"")]
    Cancel {
        /// Execution id, or a unique prefix of it.
        #[arg(value_parser = id)]
        id: String,
        /// Why, recorded as the execution's error.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Fetch the result the executor node signed and check it here: the signature, the
    /// signing domain, and that the signer is the executor the result names. Prints the
    /// executor, the outcome and "signature valid".
    ///
    /// A verified execution is checked from its round instead: every executor's signed
    /// commit, reveal or failed result, that each reveal opens its commit, and that the
    /// verdicts and the decision follow from them (anyone can re-check it).
    ///
    /// Exit code: 0 when valid, 1 when the result does not verify (or does not match the
    /// execution).
    #[command(after_help = "Examples:
  mesg executions verify 3f2a9c1e
  mesg executions verify 3f2a9c1e --json")]
    Verify {
        /// Execution id, or a unique prefix of it.
        #[arg(value_parser = id)]
        id: String,
    },
    /// Why an execution is not running: the providers this node considered and why each
    /// was passed over (busy, unreachable, refused, no running instance, does not run
    /// the service), the attempts, the last error and when the next attempt happens. For
    /// an execution that runs or ended, says so.
    #[command(after_help = "Examples:
  mesg executions why 3f2a9c1e
  mesg executions why 3f2a9c1e --json")]
    Why {
        /// Execution id, or a unique prefix of it.
        #[arg(value_parser = id)]
        id: String,
    },
}

#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Only events of this service (sid or hash).
    #[arg(long, value_name = "ID")]
    pub service: Option<String>,
    /// Only events with this key.
    #[arg(long, value_name = "KEY")]
    pub event: Option<String>,
    /// First print the N most recent (stored) events, oldest first.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=10000))]
    pub recent: Option<u32>,
}

/// A process id (or name, or a unique prefix of an id).
fn process_id(s: &str) -> Result<String, String> {
    let t = s.trim();
    if t.is_empty() || t == "." || t == ".." {
        return Err(format!(
            "`{s}` is not a process: give its name (e.g. tick-pipeline) or its id"
        ));
    }
    Ok(t.to_string())
}

#[derive(Debug, Subcommand)]
pub enum ProcessCommand {
    /// Create a process from its YAML file and print its id. The node validates it first
    /// (every error, with its line, step and path) and starts listening to its trigger.
    ///
    /// Every `$(env:NAME)` the file uses is replaced by the node when it creates the
    /// process; the values come from --env NAME=VALUE, else from this shell's environment.
    /// One that is in neither is an error naming it. Creating the same definition again
    /// gives the same process.
    #[command(after_help = "Examples:
  mesg process create pipeline.yml
  mesg process create pipeline.yml --env WHO=ops
  WHO=ops mesg process create pipeline.yml
  ID=$(mesg process create pipeline.yml)")]
    Create {
        /// The process file (YAML).
        file: PathBuf,
        /// Value of a `$(env:NAME)` of the file (overrides the environment); repeatable.
        #[arg(long = "env", value_name = "NAME=VALUE", value_parser = env_pair)]
        env: Vec<(String, String)>,
    },
    /// Check a process file without creating it: print every error (its line and column
    /// when known, the step and the field path), or a summary of its steps.
    ///
    /// This needs a node (--node): the services, tasks, events and input types the file
    /// names are checked against the services the node knows, here and in the network.
    /// `$(env:NAME)` values come from --env, else from the environment, as for `create`.
    ///
    /// Exit code: 0 when valid, 1 when invalid (or on any error), 2 when the file cannot
    /// be read.
    #[command(after_help = "Examples:
  mesg process validate pipeline.yml
  mesg process validate pipeline.yml --env WHO=ops
  mesg process validate pipeline.yml --json | jq .errors")]
    Validate {
        /// The process file (YAML).
        file: PathBuf,
        /// Value of a `$(env:NAME)` of the file (overrides the environment); repeatable.
        #[arg(long = "env", value_name = "NAME=VALUE", value_parser = env_pair)]
        env: Vec<(String, String)>,
    },
    /// List the processes the node runs: id, name, trigger, steps and runs in progress.
    #[command(after_help = "Examples:
  mesg process list
  mesg process list --json | jq -r '.processes[].id'")]
    List,
    /// Show one process: its trigger and its steps as a tree (what runs after what, and
    /// the error branches), with the task each step executes, its retries and timeout.
    #[command(after_help = "Examples:
  mesg process show tick-pipeline
  mesg process show 9xKf3a1b      # the start of a process id
  mesg process show tick-pipeline --json")]
    Show {
        /// Process name, id, or a unique prefix of its id.
        #[arg(value_name = "PROCESS", value_parser = process_id)]
        id: String,
    },
    /// List the runs of a process, newest first: run id, status, start, duration and
    /// error. Show one with `mesg process run RUN_ID`.
    #[command(after_help = "Examples:
  mesg process runs tick-pipeline
  mesg process runs tick-pipeline --limit 100
  mesg process runs tick-pipeline --json | jq '.runs[0].status'")]
    Runs {
        /// Process name, id, or a unique prefix of its id.
        #[arg(value_name = "PROCESS", value_parser = process_id)]
        id: String,
        /// At most N runs (1-1000; the node's default is 20).
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1000))]
        limit: Option<u32>,
    },
    /// Show one run: its status and timing, then each step in the order of the process
    /// with its status, attempts (the execution ids, for `mesg executions show`), timing
    /// and output or error.
    ///
    /// RUN_ID is the full id, or the start of the id of one of the 1000 newest runs of a
    /// process (as `mesg process runs` shows it).
    #[command(after_help = "Examples:
  mesg process run 3f2a9c1e
  mesg process run 3f2a9c1e0b7d4e2f8a6c5b4d3e2f1a0b --json")]
    Run {
        /// Run id, or a unique prefix of it.
        #[arg(value_name = "RUN_ID", value_parser = id)]
        id: String,
    },
    /// Follow the runs of a process as they change (Ctrl-C to stop): one line per change,
    /// with the time, the run, its status and the steps that changed.
    ///
    /// With --json, one Run JSON object (the whole run) per change.
    #[command(after_help = "Examples:
  mesg process logs tick-pipeline
  mesg process logs tick-pipeline --json | jq -c '{id, status}'")]
    Logs {
        /// Process name, id, or a unique prefix of its id.
        #[arg(value_name = "PROCESS", value_parser = process_id)]
        id: String,
    },
    /// Delete a process: it triggers no more runs, and its runs in progress end Failed.
    #[command(after_help = "Examples:
  mesg process delete tick-pipeline")]
    Delete {
        /// Process name, id, or a unique prefix of its id.
        #[arg(value_name = "PROCESS", value_parser = process_id)]
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    /// The node's identity (public key, peer id), addresses, version and Docker status.
    #[command(after_help = "Examples:
  mesg node info
  mesg --node http://10.0.0.5:50052 --token s3cret node info
  mesg node info --json | jq -r .public_key")]
    Info,
}

#[derive(Debug, Subcommand)]
pub enum AccountCommand {
    /// Create an account: a new ed25519 key in $MESG_HOME/accounts/NAME.key (mode
    /// 0600). Never overwrites an existing account.
    #[command(after_help = "Examples:
  mesg account create
  mesg account create alice
  MESG_HOME=/tmp/mesg mesg account create ci")]
    Create {
        /// Account name: letters, digits, `-`, `_`, `.`.
        #[arg(default_value = "default")]
        name: String,
    },
    /// List the accounts with their public keys.
    #[command(after_help = "Examples:
  mesg account list
  mesg account list --json")]
    List,
}
