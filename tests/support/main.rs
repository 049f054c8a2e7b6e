fn main() -> std::process::ExitCode {
    gradebook::cli::main()
}
