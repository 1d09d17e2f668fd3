// The compiler allocates many small values; mimalloc makes that cheap.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `mi_option_purge_delay` (its place in `mi_option_e`, the same
/// in mimalloc 2 and 3, whose header keeps the order stable).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

fn main() -> std::process::ExitCode {
    // A run lasts seconds: memory given back to the system while it runs
    // is only faulted in and zeroed again (a fifth of a large compile).
    // -1: never purge; the system takes it all back at exit.
    // SAFETY: sets an integer option; no allocation is in flight.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
    hardmerge::cli::main()
}
