//! CPU pinning: workers are spread round-robin over the CPUs this process may use.

/// The CPUs this process is allowed to run on, in order.
pub fn allowed_cpus() -> Vec<usize> {
    core_affinity::get_core_ids()
        .map(|ids| ids.into_iter().map(|c| c.id).collect())
        .unwrap_or_default()
}

/// Pin the calling thread to `cpu`; false if the kernel refused.
pub fn pin_current(cpu: usize) -> bool {
    core_affinity::set_for_current(core_affinity::CoreId { id: cpu })
}
