//! Count word frequencies in standard input and print the most common ones.
//!
//! Usage: `word_freq [N] < input.txt` (default N = 10)

use std::collections::HashMap;
use std::env;
use std::io::{self, BufRead};

/// Split a line into lowercase words, treating anything that is not
/// alphanumeric (or an apostrophe inside a word) as a separator.
fn words(line: &str) -> impl Iterator<Item = String> + '_ {
    line.split(|c: char| !(c.is_alphanumeric() || c == '\''))
        .map(|w| w.trim_matches('\'').to_lowercase())
        .filter(|w| !w.is_empty())
}

fn top_n(counts: &HashMap<String, usize>, n: usize) -> Vec<(&String, &usize)> {
    let mut entries: Vec<_> = counts.iter().collect();
    // Highest count first; ties broken alphabetically for stable output.
    entries.sort_by(|a, b| b.1.cmp(a.1).then_with(|| a.0.cmp(b.0)));
    entries.truncate(n);
    entries
}

fn main() -> io::Result<()> {
    let n: usize = env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);

    let stdin = io::stdin();
    let mut counts: HashMap<String, usize> = HashMap::new();
    let mut total = 0usize;
    for line in stdin.lock().lines() {
        for word in words(&line?) {
            *counts.entry(word).or_insert(0) += 1;
            total += 1;
        }
    }

    println!("{} words, {} distinct", total, counts.len());
    for (word, count) in top_n(&counts, n) {
        let share = if total > 0 { 100.0 * *count as f64 / total as f64 } else { 0.0 };
        println!("{:>8} {:>6.2}%  {}", count, share, word);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_and_lowercases() {
        let got: Vec<String> = words("Hello, hello world! It's 'quoted'.").collect();
        assert_eq!(got, vec!["hello", "hello", "world", "it's", "quoted"]);
    }

    #[test]
    fn top_n_orders_by_count_then_word() {
        let mut counts = HashMap::new();
        counts.insert("b".to_string(), 2);
        counts.insert("a".to_string(), 2);
        counts.insert("c".to_string(), 5);
        let top: Vec<&str> = top_n(&counts, 2).iter().map(|(w, _)| w.as_str()).collect();
        assert_eq!(top, vec!["c", "a"]);
    }
}
