fn main() {
    std::process::exit(chronon_build::run(std::env::args_os()));
}
