//! `mesg`: the command-line tool of a mesg node. Arguments are in [`args`]; each command
//! lives in [`commands`]; the HTTP client and stream parsers in [`client`]; everything
//! printed in [`output`].

mod accounts;
mod args;
mod client;
mod commands;
mod contexts;
mod inputs;
mod output;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = args::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            output::errln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let ctx = commands::Ctx::new(cli.global);
    match runtime.block_on(commands::run(&ctx, cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if let Some(commands::Exit(code)) = e.downcast_ref::<commands::Exit>() {
                return ExitCode::from(*code);
            }
            output::print_error(&e);
            ExitCode::FAILURE
        }
    }
}
