use clap::{Parser, Subcommand};
use mesg_protocol::ServiceDefinition;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// mesg: deploy Services, execute their tasks and watch their events on a mesg node.
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Work with Services: validate, deploy, start, stop...
    #[command(subcommand)]
    Service(ServiceCommand),
}

#[derive(Debug, Subcommand)]
enum ServiceCommand {
    /// Check a service definition (a directory with mesg.yml, or the file itself) and print
    /// every error, or a summary of a valid one.
    Validate {
        /// Service directory or mesg.yml file.
        #[arg(default_value = ".")]
        path: PathBuf,
    },
}

fn definition_path(path: &Path) -> PathBuf {
    if path.is_dir() {
        path.join("mesg.yml")
    } else {
        path.to_path_buf()
    }
}

fn validate(path: &Path) -> ExitCode {
    let file = definition_path(path);
    let text = match std::fs::read_to_string(&file) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: cannot read {}: {e}", file.display());
            return ExitCode::from(2);
        }
    };
    match ServiceDefinition::from_yaml(&text) {
        Ok(def) => {
            println!("{} is valid", file.display());
            println!("name: {}", def.name);
            if let Some(sid) = &def.sid {
                println!("sid:  {sid}");
            }
            println!(
                "tasks: {}",
                def.tasks.keys().cloned().collect::<Vec<_>>().join(", ")
            );
            println!(
                "events: {}",
                def.events.keys().cloned().collect::<Vec<_>>().join(", ")
            );
            if path.is_dir() {
                match mesg_package::Package::from_dir(path, mesg_package::DEFAULT_MAX_PACKAGE_BYTES)
                {
                    Ok(pkg) => {
                        println!(
                            "package: {} files, {} bytes, hash {}",
                            pkg.file_count(),
                            pkg.size(),
                            pkg.hash()
                        );
                        println!("service hash: {}", def.service_hash(&pkg.hash()));
                    }
                    Err(e) => {
                        eprintln!("error: the definition is valid but the package is not: {e}");
                        return ExitCode::FAILURE;
                    }
                }
            } else {
                println!(
                    "service hash: (validate the service directory to compute it; it covers the whole package)"
                );
            }
            ExitCode::SUCCESS
        }
        Err(errors) => {
            for e in &errors.0 {
                eprintln!("{}:{e}", file.display());
            }
            eprintln!("{} error(s) in {}", errors.0.len(), file.display());
            ExitCode::FAILURE
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Service(ServiceCommand::Validate { path }) => validate(&path),
    }
}
