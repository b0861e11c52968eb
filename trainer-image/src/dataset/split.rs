//! Deterministic splits: `percent` of the rows to `First`, the rest to `Rest`.
//!
//! Each row gets a pseudo-random key from (seed, row index); rows are ordered by key within
//! each stratum and the first `round(n * percent / 100)` of every stratum go to `First`.
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
    let mut first = Vec::new();
    let mut rest = Vec::new();
    for mut members in groups.into_values() {
        members.sort_by_key(|&index| mix(seed as u64 ^ mix(index as u64)));
        let take = (members.len() * percent.clamp(0, 100) as usize + 50) / 100;
        first.extend_from_slice(&members[..take]);
        rest.extend_from_slice(&members[take..]);
    }
    first.sort_unstable();
    rest.sort_unstable();
    (first, rest)
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
            if !stratify {
                let expected = (labels.len() * percent as usize + 50) / 100;
                prop_assert_eq!(first.len(), expected);
            }
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
        assert_eq!(first.len(), 750);
    }
}
