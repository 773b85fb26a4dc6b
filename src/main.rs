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

/// mimalloc, not glibc's malloc: the server allocates and frees many small values a request
/// (rows, texts, JSON), where glibc's bins cost a sixth of a read's time (Cargo.toml).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
