//! The memory allocator of every binary of the platform: mimalloc, tuned for a small resident
//! footprint. Each binary chooses it with [`install!`] in its `main.rs`; libraries never
//! install an allocator, so a crate that links the platform's libraries keeps its own choice.
//!
//! Why mimalloc: request handling allocates many small, short-lived objects, which glibc's
//! allocator served with a fifth of the gateway's CPU time in profiles; mimalloc's
//! thread-local pages make that a small share.
//!
//! Why the tuning: on Linux mimalloc commits each arena eagerly by default, which keeps memory
//! a thread once touched resident after it is freed. Under the gateway benchmark that was
//! 11 MB more RSS at rest and 32 MB instead of 21 MB at peak, for no measurable throughput.
//! [`ARENA_EAGER_COMMIT`] is turned off before the first allocation (as the
//! `MIMALLOC_ARENA_EAGER_COMMIT=0` environment variable would, had every operator to set it).
#![warn(missing_docs)]

pub use mimalloc::MiMalloc;

/// Makes mimalloc, tuned, the allocator of the binary whose crate root invokes it:
///
/// ```ignore
/// platform_alloc::install!();
/// ```
///
/// Besides the allocator, it keeps a reference to [`TUNE_BEFORE_MAIN`], so the linker keeps
/// the object file holding that constructor even though nothing calls it.
#[macro_export]
macro_rules! install {
    () => {
        #[global_allocator]
        static PLATFORM_ALLOCATOR: $crate::MiMalloc = $crate::MiMalloc;

        #[used]
        static PLATFORM_ALLOCATOR_TUNING: &$crate::Constructor = &$crate::TUNE_BEFORE_MAIN;
    };
}

/// `mi_option_arena_eager_commit`: its index in `mi_option_e` (`mimalloc.h`; the same in
/// mimalloc 2 and 3). `libmimalloc-sys` does not export this constant.
pub const ARENA_EAGER_COMMIT: std::ffi::c_int = 4;

/// Applies the tuning; idempotent. Runs by itself before `main` on Linux; other platforms
/// keep mimalloc's defaults (it commits eagerly only where the OS overcommits).
pub fn tune() {
    #[allow(unsafe_code)]
    // SAFETY: `mi_option_set` stores a value in mimalloc's static option table; it is valid
    // before the allocator is initialised and from any thread, and this option only affects
    // arenas reserved afterwards.
    unsafe {
        libmimalloc_sys::mi_option_set(ARENA_EAGER_COMMIT, 0);
    }
}

/// The current value of an option (for tests and diagnostics).
pub fn option(option: std::ffi::c_int) -> std::ffi::c_long {
    #[allow(unsafe_code)]
    // SAFETY: reads mimalloc's static option table; any option index below `_mi_option_last`
    // is valid, and callers pass the constants above.
    unsafe {
        libmimalloc_sys::mi_option_get(option)
    }
}

extern "C" fn tune_before_main() {
    tune();
}

/// A function run by the loader before `main`.
pub type Constructor = extern "C" fn();

/// Runs [`tune`] as an ELF constructor: before Rust's runtime makes its first allocation, so
/// even the first arena is reserved lazily. Other platforms keep it as a plain static.
#[used]
#[allow(unsafe_code)]
#[cfg_attr(target_os = "linux", unsafe(link_section = ".init_array"))]
pub static TUNE_BEFORE_MAIN: Constructor = tune_before_main;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tuning_is_idempotent() {
        tune();
        tune();
        assert_eq!(option(ARENA_EAGER_COMMIT), 0);
    }
}
