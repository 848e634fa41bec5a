use clap::Parser;

fn main() {
    let cli = kelpie::cli::Cli::parse();
    let code = kelpie::dispatch::dispatch(cli);
    std::process::exit(code);
}
