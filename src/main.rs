//! `fnlb`: parse the command line, then serve or run one client command.

use std::process::ExitCode;

use fnlb::cli::Command;
use fnlb::config::LogFormat;

fn main() -> ExitCode {
    let cli = match fnlb::cli::parse() {
        Ok(cli) => cli,
        Err(e) => {
            eprintln!("fnlb: {e}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("fnlb: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match cli.command {
        Command::Serve(args) => {
            init_tracing(args.log_format);
            let result = args
                .into_config()
                .map_err(anyhow::Error::from)
                .and_then(|config| runtime.block_on(fnlb::app::run(config, fnlb::app::shutdown_signal())));
            if let Err(e) = result {
                eprintln!("fnlb: {e:#}");
                return ExitCode::FAILURE;
            }
            ExitCode::SUCCESS
        }
        command => match runtime.block_on(fnlb::cli::run_client(command)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
    }
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("FNLB_LOG").unwrap_or_else(|_| "info".into());
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// mimalloc: the proxy's many short-lived buffers cost a third less than with the system allocator at 256
/// connections (docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
