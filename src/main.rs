//! The `keel` binary: read the configuration, start one executor per core.

use clap::Parser;

use keel::config::{Config, Flags};

fn main() {
    // `keel demo ...` has its own flags; it goes before the server's are
    // parsed so a config file named as the first argument keeps working.
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args.get(1).is_some_and(|a| a == "demo") {
        std::process::exit(keel::demo::main(args[1..].to_vec()));
    }
    let flags = Flags::parse();
    if let Some(path) = flags.check_config.clone() {
        std::process::exit(keel::cluster::check::run(flags, &path));
    }
    let config = match Config::load(flags) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("keel: {e}");
            std::process::exit(2);
        }
    };
    let level = match config.loglevel.as_str() {
        "debug" => "debug",
        "verbose" => "debug",
        "warning" => "warn",
        _ => "info",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| level.into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    if let Err(e) = keel::runtime::run(config) {
        eprintln!("keel: {e}");
        std::process::exit(1);
    }
    // Leave without waiting for executor threads that may still be parked.
    std::process::exit(0);
}
