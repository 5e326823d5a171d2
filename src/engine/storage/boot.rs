//! Telling whether the machine rebooted since the journal was written.
//!
//! Written offsets survive a killed process (the kernel holds the bytes) but not a power loss or
//! OS crash; durable offsets survive both. After a reboot the engine therefore trusts only durable
//! offsets. The boot is identified by the kernel's random boot id where there is one (Linux,
//! Android), else by the boot time (Apple platforms), else it is unknown and treated as a reboot.

/// An identifier of the current boot, if the platform offers one.
pub fn current_boot_id() -> Option<String> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        if let Ok(id) = std::fs::read_to_string("/proc/sys/kernel/random/boot_id") {
            let id = id.trim();
            if !id.is_empty() {
                return Some(id.to_string());
            }
        }
    }
    #[cfg(any(target_os = "macos", target_os = "ios", target_os = "tvos", target_os = "watchos", target_os = "visionos"))]
    {
        let mut tv = libc::timeval { tv_sec: 0, tv_usec: 0 };
        let mut size = std::mem::size_of::<libc::timeval>();
        let mut mib = [libc::CTL_KERN, libc::KERN_BOOTTIME];
        // SAFETY: mib names KERN_BOOTTIME, which writes one timeval into `tv` of `size` bytes.
        let rc = unsafe { libc::sysctl(mib.as_mut_ptr(), 2, (&mut tv as *mut libc::timeval).cast(), &mut size, std::ptr::null_mut(), 0) };
        if rc == 0 {
            return Some(format!("boottime-{}.{}", tv.tv_sec, tv.tv_usec));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    #[test]
    fn boot_id_is_stable_within_a_boot() {
        let a = super::current_boot_id();
        assert!(a.is_some(), "this platform should expose a boot id");
        assert_eq!(a, super::current_boot_id());
    }
}
