use clap::Parser;

fn main() {
    // The guardian (see guardian.rs) is kelpie re-executed by `kelpie run`;
    // it is not a user-facing command, so it bypasses the CLI.
    let mut args = std::env::args_os().skip(1);
    if args.next().as_deref() == Some(std::ffi::OsStr::new(kelpie::guardian::SUBCOMMAND)) {
        let kelpie = args.next().map(|a| a.to_string_lossy().into_owned());
        std::process::exit(kelpie::guardian::watch(kelpie.as_deref().unwrap_or("")));
    }
    let cli = kelpie::cli::Cli::parse();
    let code = kelpie::app::dispatch(cli);
    std::process::exit(code);
}
