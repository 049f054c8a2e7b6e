//! `gradebook`: parses the command line and runs what it names (see `cli`).

fn main() -> std::process::ExitCode {
    gradebook::cli::main()
}
