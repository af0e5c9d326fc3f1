//! The tuning is applied before `main` by the constructor alone: nothing here calls `tune`.
//! This test binary installs the allocator the way every platform binary does.

platform_alloc::install!();

#[test]
#[cfg(target_os = "linux")]
fn arenas_are_committed_lazily_from_the_start() {
    assert_eq!(
        platform_alloc::option(platform_alloc::ARENA_EAGER_COMMIT),
        0
    );
}
