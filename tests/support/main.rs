//! The `gradebook` binary, built beside the system tests so they can run it
//! as real processes.

fn main() -> std::process::ExitCode {
    gradebook::cli::main()
}
