fn main() -> std::process::ExitCode {
    hardmerge::cli::main()
}
