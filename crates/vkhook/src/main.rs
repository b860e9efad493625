use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match vkhook::logging::LogFormat::from_env() {
        Ok(format) => vkhook::logging::init(format),
        Err(e) => {
            eprintln!("vkhook: {e}");
            return std::process::ExitCode::from(2);
        }
    }
    match vkhook::cli::run(vkhook::cli::Cli::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // One line, naming what is wrong.
            eprintln!("vkhook: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}
