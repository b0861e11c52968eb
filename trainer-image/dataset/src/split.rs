//! Deterministic splits: `percent` of the rows to `First`, the rest to `Rest`.
//!
//! Each row gets a pseudo-random key from (seed, row index); rows are ordered by key within
//! each stratum. `First` gets `round(n * percent / 100)` rows in all, shared between strata in
//! proportion to their sizes (largest remainders get the rounding), each taking its lowest keys.
//! The two parts of one (parent, percent, seed, stratifyBy) are therefore disjoint and
//! together exactly the parent, whichever Dataset is imported first.

use std::collections::BTreeMap;

use ocellus_crds::dataset::SplitPart;

/// Row indices of `First` and `Rest`, each in the parent's order.
pub fn split_indices(strata: &[Option<&str>], percent: i32, seed: i64) -> (Vec<usize>, Vec<usize>) {
    let mut groups: BTreeMap<Option<&str>, Vec<usize>> = BTreeMap::new();
    for (index, stratum) in strata.iter().enumerate() {
        groups.entry(*stratum).or_default().push(index);
    }
    let percent = percent.clamp(0, 100) as usize;
    let sizes: Vec<usize> = groups.values().map(Vec::len).collect();
    let quotas = proportional_quotas(&sizes, (strata.len() * percent + 50) / 100);
    let mut first = Vec::new();
    let mut rest = Vec::new();
    for (mut members, take) in groups.into_values().zip(quotas) {
        members.sort_by_key(|&index| mix(seed as u64 ^ mix(index as u64)));
        first.extend_from_slice(&members[..take]);
        rest.extend_from_slice(&members[take..]);
    }
    first.sort_unstable();
    rest.sort_unstable();
    (first, rest)
}

/// Shares `total` between groups in proportion to their sizes, by largest remainder
/// (ties to the earlier group), so the shares add up to exactly `total`.
fn proportional_quotas(sizes: &[usize], total: usize) -> Vec<usize> {
    let all: usize = sizes.iter().sum::<usize>().max(1);
    let mut quotas: Vec<usize> = sizes.iter().map(|&size| size * total / all).collect();
    let mut by_remainder: Vec<usize> = (0..sizes.len()).collect();
    by_remainder.sort_by_key(|&i| std::cmp::Reverse((sizes[i] * total) % all));
    let missing = total - quotas.iter().sum::<usize>();
    for &i in by_remainder.iter().take(missing) {
        quotas[i] += 1;
    }
    quotas
}

/// The indices of one part.
pub fn part_indices(strata: &[Option<&str>], percent: i32, seed: i64, part: SplitPart) -> Vec<usize> {
    let (first, rest) = split_indices(strata, percent, seed);
    match part {
        SplitPart::First => first,
        SplitPart::Rest => rest,
    }
}

/// SplitMix64's finaliser: a fast, well-mixed, platform-independent hash.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn parts_are_disjoint_and_cover_the_parent(
            labels in proptest::collection::vec(proptest::option::of(0u8..4), 0..300),
            percent in 1i32..100,
            seed in any::<i64>(),
            stratify in any::<bool>(),
        ) {
            let names: Vec<String> = labels.iter().map(|l| format!("{l:?}")).collect();
            let strata: Vec<Option<&str>> = if stratify {
                labels.iter().zip(&names).map(|(l, n)| l.map(|_| n.as_str())).collect()
            } else {
                vec![None; labels.len()]
            };
            let (first, rest) = split_indices(&strata, percent, seed);
            let mut all: Vec<usize> = first.iter().chain(&rest).copied().collect();
            all.sort_unstable();
            prop_assert_eq!(all, (0..labels.len()).collect::<Vec<_>>());
            prop_assert_eq!(part_indices(&strata, percent, seed, SplitPart::First), first.clone());
            let expected = (labels.len() * percent as usize + 50) / 100;
            prop_assert_eq!(first.len(), expected);
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_split_and_another_seed_another() {
        let strata = vec![None; 1000];
        assert_eq!(split_indices(&strata, 75, 1), split_indices(&strata, 75, 1));
        assert_ne!(split_indices(&strata, 75, 1).0, split_indices(&strata, 75, 2).0);
    }

    #[test]
    fn stratification_keeps_class_proportions() {
        let strata: Vec<Option<&str>> =
            (0..1000).map(|i| Some(if i % 10 == 0 { "rare" } else { "common" })).collect();
        let (first, _) = split_indices(&strata, 75, 9);
        let rare = first.iter().filter(|&&i| i % 10 == 0).count();
        assert_eq!(rare, 75, "75% of the 100 rare rows");
        let uneven: Vec<Option<&str>> =
            (0..40).map(|i| Some(if i % 4 == 0 { "rare" } else { "common" })).collect();
        let (uneven_first, _) = split_indices(&uneven, 75, 3);
        assert_eq!(uneven_first.len(), 30, "round(40 * 75%) in all, not the sum of rounded strata");
        assert_eq!(first.len(), 750);
    }
}
