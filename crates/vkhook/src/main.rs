use clap::Parser;
use vkhook::config::{Cli, Command, KeysCommand};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn")),
        )
        .init();
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Serve(args) => match args.settings() {
            Ok(settings) => vkhook::cli::serve(settings).await,
            Err(e) => Err(e.into()),
        },
        Command::Migrate(args) => vkhook::cli::migrate(args).await,
        Command::Demo(args) => vkhook::cli::demo(args).await,
        Command::Sandbox { port } => vkhook::cli::sandbox(*port).await,
        Command::Keys { action: KeysCommand::Rotate(args) } => vkhook::cli::keys_rotate(args).await,
        Command::Keys { action: KeysCommand::Generate { id } } => {
            println!("{}", secrecy::ExposeSecret::expose_secret(&vkhook::vault::Vault::generate_spec(id)));
            Ok(())
        }
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // One line, naming what is wrong.
            eprintln!("vkhook: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}
