fn main() {
    std::process::exit(phivault::cli::main());
}
