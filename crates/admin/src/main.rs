//! `taskfleet-admin`: manage client API keys in the tasks table (`TASKS_TABLE`), in AWS with the
//! usual credentials, or in the emulator with `AWS_ENDPOINT_URL`.

use clap::Parser;
use taskfleet_adapters::{DynamoKeyRecords, config};
use taskfleet_admin::{Command, run};

#[derive(Debug, Parser)]
#[command(name = "taskfleet-admin", about = "Issue, list and revoke taskfleet client API keys")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let sdk = config::aws().await;
    let store = match DynamoKeyRecords::from_env(&sdk) {
        Ok(store) => store,
        Err(error) => {
            eprintln!("taskfleet-admin: {error}");
            return std::process::ExitCode::from(2);
        }
    };
    match run(cli.command, &store, &mut std::io::stdout().lock()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("taskfleet-admin: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}
