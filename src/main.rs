use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = point_engine::config::Cli::parse();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    match point_engine::startup::run_cli(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("point-engine: {error}");
            ExitCode::FAILURE
        }
    }
}
