//! Text columns: hashed TF-IDF of word unigrams and bigrams (sublinear tf, smooth idf, l2 norm,
//! as scikit-learn's HashingVectorizer + TfidfTransformer), reduced by a truncated SVD fitted on
//! the training rows.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hasher;
use std::sync::LazyLock;

use faer::Mat;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use regex::Regex;
use serde::{Deserialize, Serialize};
use twox_hash::XxHash64;

use crate::error::{Error, Result};
use crate::linalg::top_eigen;

/// Hashed feature space: 2^20 buckets, scikit-learn's default.
const HASH_BUCKETS: u64 = 1 << 20;
/// At most this many SVD components per text column.
pub const MAX_TEXT_COMPONENTS: usize = 32;
/// The SVD is fitted on at most this many training documents (a seeded sample) so that its
/// Gram matrix stays small; the IDF uses every training document.
const MAX_SVD_DOCUMENTS: usize = 3000;

/// scikit-learn's default token pattern: runs of two or more word characters.
static TOKEN: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"(?u)\b\w\w+\b").expect("valid regex"));

/// Hashed term counts of a document: bucket -> count of its unigrams and bigrams.
fn term_counts(text: &str) -> HashMap<u32, f64> {
    let lower = text.to_lowercase();
    let tokens: Vec<&str> = TOKEN.find_iter(&lower).map(|m| m.as_str()).collect();
    let mut counts = HashMap::new();
    let grams =
        tokens.iter().map(|t| t.to_string()).chain(tokens.windows(2).map(|w| format!("{} {}", w[0], w[1])));
    for gram in grams {
        let mut hasher = XxHash64::with_seed(0);
        hasher.write(gram.as_bytes());
        *counts.entry((hasher.finish() % HASH_BUCKETS) as u32).or_insert(0.0) += 1.0;
    }
    counts
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TextVectorizer {
    documents: usize,
    /// Document frequency of every bucket seen in training.
    document_frequency: BTreeMap<u32, u32>,
    /// SVD loadings of every bucket that has any: bucket -> one weight per component.
    loadings: BTreeMap<u32, Vec<f32>>,
    components: usize,
}

impl TextVectorizer {
    pub fn fit(column: &str, texts: &[Option<&str>], seed: u64) -> Result<TextVectorizer> {
        let docs: Vec<HashMap<u32, f64>> = texts.iter().map(|t| term_counts(t.unwrap_or(""))).collect();
        let mut document_frequency = BTreeMap::new();
        for doc in &docs {
            for &bucket in doc.keys() {
                *document_frequency.entry(bucket).or_insert(0u32) += 1;
            }
        }
        if document_frequency.is_empty() {
            return Err(Error::bad_input(format!(
                "text column {column:?} has no words (tokens of two or more letters or digits) in any \
                 training row: declare it as categorical, or drop it"
            )));
        }
        let mut vectorizer = TextVectorizer {
            documents: docs.len(),
            document_frequency,
            loadings: BTreeMap::new(),
            components: 0,
        };
        let mut sample: Vec<usize> = (0..docs.len()).collect();
        sample.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(seed));
        sample.truncate(MAX_SVD_DOCUMENTS);
        sample.sort_unstable();
        let rows: Vec<Vec<(u32, f64)>> = sample.iter().map(|&i| vectorizer.tfidf(&docs[i])).collect();

        let m = rows.len();
        let dense: Vec<HashMap<u32, f64>> = rows.iter().map(|r| r.iter().copied().collect()).collect();
        let gram = Mat::<f64>::from_fn(m, m, |a, b| {
            let (small, large) = if rows[a].len() <= rows[b].len() { (a, b) } else { (b, a) };
            rows[small].iter().map(|(k, v)| v * dense[large].get(k).unwrap_or(&0.0)).sum()
        });
        let (values, u) = top_eigen(&gram, MAX_TEXT_COMPONENTS.min(m))?;
        let largest = values.first().copied().unwrap_or(0.0);
        let k = values.iter().take_while(|&&l| l > 1e-9 * largest.max(1e-300)).count();
        let mut loadings: BTreeMap<u32, Vec<f32>> = BTreeMap::new();
        for (r, row) in rows.iter().enumerate() {
            for &(bucket, v) in row {
                let entry = loadings.entry(bucket).or_insert_with(|| vec![0.0; k]);
                for c in 0..k {
                    // Right singular vector: X^T u / sigma.
                    entry[c] += (v * u[(r, c)] / values[c].sqrt()) as f32;
                }
            }
        }
        vectorizer.loadings = loadings;
        vectorizer.components = k;
        Ok(vectorizer)
    }

    pub fn components(&self) -> usize {
        self.components
    }

    /// The l2-normalised TF-IDF of a document, buckets sorted.
    fn tfidf(&self, counts: &HashMap<u32, f64>) -> Vec<(u32, f64)> {
        let n = self.documents as f64;
        let mut row: Vec<(u32, f64)> = counts
            .iter()
            .map(|(&bucket, &count)| {
                let df = *self.document_frequency.get(&bucket).unwrap_or(&0) as f64;
                let idf = ((1.0 + n) / (1.0 + df)).ln() + 1.0;
                (bucket, (1.0 + count.ln()) * idf)
            })
            .collect();
        let norm = row.iter().map(|(_, v)| v * v).sum::<f64>().sqrt();
        if norm > 0.0 {
            row.iter_mut().for_each(|(_, v)| *v /= norm);
        }
        row.sort_unstable_by_key(|(k, _)| *k);
        row
    }

    /// The SVD components of one document (zeros for an empty or missing text).
    pub fn transform_one(&self, text: Option<&str>) -> Vec<f32> {
        let mut out = vec![0.0f32; self.components];
        for (bucket, v) in self.tfidf(&term_counts(text.unwrap_or(""))) {
            if let Some(weights) = self.loadings.get(&bucket) {
                for (o, w) in out.iter_mut().zip(weights) {
                    *o += v as f32 * w;
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REVIEWS: [&str; 8] = [
        "The engine runs smoothly and the brakes are new",
        "Engine rebuilt last year, new brakes, runs great",
        "Rust on the doors, engine needs work",
        "Interior is clean, leather seats, no smoke",
        "Clean leather interior and new seats",
        "Needs a new engine; sold as is",
        "Leather seats like new, clean interior",
        "",
    ];

    #[test]
    fn tokens_are_unigrams_and_bigrams_of_two_letters_or_more() {
        let counts = term_counts("A new engine, new ENGINE");
        // Unigrams new, engine, new, engine ("a" is too short) and bigrams "new engine" (twice) and
        // "engine new": 7 grams in 4 distinct buckets.
        assert_eq!(counts.values().sum::<f64>(), 7.0);
        assert_eq!(counts.len(), 4);
    }

    #[test]
    fn similar_texts_land_close_together() {
        let texts: Vec<Option<&str>> = REVIEWS.iter().map(|t| Some(*t)).collect();
        let v = TextVectorizer::fit("review", &texts, 7).unwrap();
        assert!(v.components() > 2 && v.components() <= MAX_TEXT_COMPONENTS);
        let embed = |t: &str| v.transform_one(Some(t));
        let cosine = |a: &[f32], b: &[f32]| {
            let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
            dot / (a.iter().map(|x| x * x).sum::<f32>().sqrt() * b.iter().map(|x| x * x).sum::<f32>().sqrt())
        };
        let engine = embed("engine runs great with new brakes");
        let interior = embed("clean leather seats");
        assert!(cosine(&engine, &embed(REVIEWS[0])) > cosine(&engine, &embed(REVIEWS[3])));
        assert!(cosine(&interior, &embed(REVIEWS[4])) > cosine(&interior, &embed(REVIEWS[1])));
        assert!(v.transform_one(None).iter().all(|x| *x == 0.0));
        // A fit is deterministic for a seed.
        assert_eq!(v, TextVectorizer::fit("review", &texts, 7).unwrap());
    }

    #[test]
    fn a_column_without_words_is_a_clear_error() {
        let e = TextVectorizer::fit("notes", &[Some("a"), None, Some("!")], 0).unwrap_err();
        assert!(e.is_bad_input() && e.to_string().contains("\"notes\""), "{e}");
    }
}
