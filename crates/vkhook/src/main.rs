use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "vkhook", version, about = "Connects VK communities to a bot in one click")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the VK sandbox alone.
    Sandbox {
        #[arg(long, default_value_t = 8081)]
        port: u16,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).init();
    match Cli::parse().command {
        Command::Sandbox { port } => {
            let sandbox = vk_sandbox::Sandbox::start(vk_sandbox::SandboxConfig {
                bind: ([127, 0, 0, 1], port).into(),
                ..Default::default()
            })
            .await?;
            println!("VK sandbox: {}", sandbox.url());
            tokio::signal::ctrl_c().await?;
        }
    }
    Ok(())
}
