/// Counts the heap where a bound asks for it (the local engine's jobs:
/// the crate's `heap` module).
#[global_allocator]
static HEAP: chronon_build::Counting = chronon_build::Counting;

fn main() {
    std::process::exit(chronon_build::run(std::env::args_os()));
}
