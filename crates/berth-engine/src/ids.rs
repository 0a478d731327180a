//! Random ids: container, network, exec and volume ids are 64 hex digits,
//! as Docker's are. A leaf module: it uses nothing of the engine.

pub(crate) fn random_u64() -> u64 {
    let mut b = [0u8; 8];
    // SAFETY: getrandom fills the buffer we pass.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    if n != 8 {
        // Never reached on Linux ≥ 3.17; still, don't hand out zeros.
        let t = berth_oci::time::now_nanos() as u64;
        return t ^ (std::process::id() as u64).rotate_left(32);
    }
    u64::from_ne_bytes(b)
}

/// 64 random hex digits.
pub(crate) fn random_hex64() -> String {
    let r = random_u64;
    format!("{:016x}{:016x}{:016x}{:016x}", r(), r(), r(), r())
}
