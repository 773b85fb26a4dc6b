use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = point_engine::config::Cli::from_command_line(std::env::args_os())
        .unwrap_or_else(|e| e.exit());
    point_engine::startup::init_logging();
    match point_engine::startup::run_cli(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("point-engine: {error}");
            ExitCode::FAILURE
        }
    }
}
