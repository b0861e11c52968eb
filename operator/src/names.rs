//! Deterministic names of the objects the operator creates, so a restarted operator finds
//! the Job it made before instead of making a second one.

/// Longest Job name: the Job controller copies it into a pod label, which allows 63.
const MAX_JOB_NAME: usize = 63;

/// The Job of `owner` with this role, for example `cats-train`; long names are cut and get
/// a hash of the full name so two long names never collide.
pub fn job_name(owner: &str, role: &str) -> String {
    let plain = format!("{owner}-{role}");
    if plain.len() <= MAX_JOB_NAME {
        return plain;
    }
    let hash = format!("{:08x}", fnv1a(owner.as_bytes()) as u32);
    let keep = MAX_JOB_NAME - role.len() - hash.len() - 2;
    let head = owner[..keep].trim_end_matches(['-', '.']);
    format!("{head}-{hash}-{role}")
}

/// FNV-1a: stable across Rust releases, unlike `DefaultHasher`.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .fold(0xcbf2_9ce4_8422_2325, |hash, byte| (hash ^ u64::from(*byte)).wrapping_mul(0x100_0000_01b3))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_are_readable() {
        assert_eq!(job_name("cats", "train"), "cats-train");
    }

    #[test]
    fn long_names_are_cut_stable_and_distinct() {
        let a = "a".repeat(200);
        let b = format!("{}b", "a".repeat(199));
        assert!(job_name(&a, "train").len() <= 63);
        assert_eq!(job_name(&a, "train"), job_name(&a, "train"));
        assert_ne!(job_name(&a, "train"), job_name(&b, "train"));
        assert!(job_name(&a, "train").ends_with("-train"));
    }
}
