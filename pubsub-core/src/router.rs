//! Many topic patterns compiled once into a word trie, run as an NFA: the set of active nodes
//! advances one key word at a time (deduplicated), so lookups cost O(words × nodes) at worst,
//! never a loop over patterns, and stacked `#` wildcards cannot blow up exponentially.

use std::borrow::Borrow;

use crate::pattern::Pattern;

type NodeId = usize;

/// The trie root; it always exists in a router built by [`Router::new`].
const ROOT: NodeId = 0;

#[derive(Debug, Clone, Default)]
struct Node {
    /// Literal-word children, sorted by word for binary search.
    words: Vec<(Box<str>, NodeId)>,
    /// Child reached by `*`.
    star: Option<NodeId>,
    /// Child reached by `#`.
    hash: Option<NodeId>,
    /// Whether this node was reached by `#`, so it may swallow any number of further words.
    swallows: bool,
    /// Indices of the patterns that end here.
    ends: Vec<usize>,
}

/// Finds every pattern that matches a key.
///
/// The patterns are compiled once into a trie; a lookup walks the key's words through it, so
/// its cost does not grow with the number of patterns. Matching agrees with
/// [`pattern::matches`](crate::pattern::matches) for every key, including untrusted ones.
#[derive(Debug, Clone, Default)]
pub(crate) struct Router {
    /// Trie nodes; empty only for a default (empty) router.
    nodes: Vec<Node>,
}

impl Router {
    /// Compiles the patterns; the i-th pattern is reported as index i.
    ///
    /// Accepts anything iterating over `Pattern` or `&Pattern` (a `Vec<Pattern>`, `&[Pattern]`,
    /// ...). Duplicate patterns keep separate indices and are all reported.
    pub(crate) fn new<I>(patterns: I) -> Self
    where
        I: IntoIterator,
        I::Item: Borrow<Pattern>,
    {
        let mut nodes = vec![Node::default()];
        for (index, pattern) in patterns.into_iter().enumerate() {
            let mut at = ROOT;
            for word in pattern.borrow().as_str().split('.') {
                at = child(&mut nodes, at, word);
            }
            nodes[at].ends.push(index);
        }
        Self { nodes }
    }

    /// Number of patterns.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.nodes.iter().map(|node| node.ends.len()).sum()
    }

    /// Whether the router has no patterns (and so matches nothing).
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Replaces the contents of `out` with the indices of all patterns matching `key`,
    /// ascending, each once.
    ///
    /// `out` doubles as scratch space for the active trie states, so reusing one buffer makes
    /// lookups allocation-free once it has grown to fit. Any `key` is accepted: words are split
    /// on `.` and compared byte for byte (case matters); an empty word, which no pattern
    /// contains, matches only `*` and `#`.
    pub(crate) fn route_into(&self, key: &str, out: &mut Vec<usize>) {
        self.walk(key, out);
        let states = out.len();
        for i in 0..states {
            let node = out[i];
            out.extend_from_slice(&self.nodes[node].ends);
        }
        out.drain(..states);
        // Each pattern ends at exactly one node and states are distinct: sorting suffices.
        out.sort_unstable();
    }

    /// Convenience: the matching indices, ascending, each once.
    #[cfg(test)]
    pub(crate) fn route(&self, key: &str) -> Vec<usize> {
        let mut out = Vec::new();
        self.route_into(key, &mut out);
        out
    }

    /// Whether any pattern matches `key`. Allocation-free after a thread's first calls.
    #[cfg(test)]
    pub(crate) fn matches_any(&self, key: &str) -> bool {
        thread_local!(static SCRATCH: std::cell::RefCell<Vec<NodeId>> = const { std::cell::RefCell::new(Vec::new()) });
        let check = |states: &mut Vec<NodeId>| {
            self.walk(key, states);
            states.iter().any(|&n| !self.nodes[n].ends.is_empty())
        };
        // `walk` never re-enters, so the borrow cannot fail; `try_with` covers TLS teardown.
        SCRATCH
            .try_with(|cell| check(&mut cell.borrow_mut()))
            .unwrap_or_else(|_| check(&mut Vec::new()))
    }

    /// Leaves in `states` the distinct trie nodes reached after consuming every word of `key`.
    fn walk(&self, key: &str, states: &mut Vec<NodeId>) {
        states.clear();
        states.extend((!self.nodes.is_empty()).then_some(ROOT)); // a default router has no root
        self.close(states);
        // Like RabbitMQ (and `pattern::matches`), the empty key has no words at all.
        let words = key.split('.').filter(|_| !key.is_empty());
        for word in words {
            let current = states.len();
            for i in 0..current {
                let node = &self.nodes[states[i]];
                if node.swallows {
                    states.push(states[i]);
                }
                if let Some(star) = node.star {
                    states.push(star);
                }
                if let Ok(at) = node.words.binary_search_by(|(w, _)| (**w).cmp(word)) {
                    states.push(node.words[at].1);
                }
            }
            states.drain(..current);
            if states.is_empty() {
                return;
            }
            self.close(states);
            states.sort_unstable();
            states.dedup();
        }
    }

    /// Adds the `#` children of `states` (a `#` may match zero words), transitively.
    fn close(&self, states: &mut Vec<NodeId>) {
        let mut i = 0;
        while i < states.len() {
            if let Some(hash) = self.nodes[states[i]].hash {
                states.push(hash);
            }
            i += 1;
        }
    }
}

/// The child of `at` for pattern word `word`, created if missing.
fn child(nodes: &mut Vec<Node>, at: NodeId, word: &str) -> NodeId {
    let next = nodes.len();
    let node = &mut nodes[at];
    let slot = match word {
        "*" => &mut node.star,
        "#" => &mut node.hash,
        _ => match node.words.binary_search_by(|(w, _)| (**w).cmp(word)) {
            Ok(i) => return node.words[i].1,
            Err(i) => {
                node.words.insert(i, (word.into(), next));
                nodes.push(Node::default());
                return next;
            }
        },
    };
    if let Some(existing) = *slot {
        return existing;
    }
    *slot = Some(next);
    let swallows = word == "#";
    nodes.push(Node {
        swallows,
        ..Node::default()
    });
    next
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pattern::matches;
    use proptest::prelude::*;

    #[test]
    fn routes_every_matching_pattern() {
        let patterns: Vec<Pattern> = ["order.*", "order.#", "#.failed", "user.created"]
            .map(|p| Pattern::new(p).unwrap())
            .into();
        let router = Router::new(&patterns);
        assert_eq!(router.len(), 4);
        assert_eq!(router.route("order.created"), [0, 1]);
        assert_eq!(router.route("order.payment.failed"), [1, 2]);
        assert!(router.matches_any("user.created"));
        assert!(!router.matches_any("user.deleted"));

        // Reuse one buffer on the hot path.
        let mut out = Vec::with_capacity(16);
        router.route_into("order", &mut out);
        assert_eq!(out, [1]);
    }

    fn pats(ps: &[&str]) -> Vec<Pattern> {
        ps.iter().map(|p| Pattern::new(*p).unwrap()).collect()
    }

    /// Indices of the patterns that `pattern::matches` accepts.
    fn reference(ps: &[Pattern], key: &str) -> Vec<usize> {
        (0..ps.len())
            .filter(|&i| matches(ps[i].as_str(), key))
            .collect()
    }

    /// Deliberately naive, independent matcher over word slices.
    fn naive(p: &[&str], k: &[&str]) -> bool {
        match p.split_first() {
            None => k.is_empty(),
            Some((&"#", rest)) => (0..=k.len()).any(|skip| naive(rest, &k[skip..])),
            Some((&w, rest)) => match k.split_first() {
                Some((&kw, krest)) => (w == "*" || w == kw) && naive(rest, krest),
                None => false,
            },
        }
    }

    fn naive_matches(pattern: &str, key: &str) -> bool {
        let p: Vec<&str> = pattern.split('.').collect();
        // RabbitMQ: the empty key has zero words; "a..b" has three
        let k: Vec<&str> = if key.is_empty() {
            Vec::new()
        } else {
            key.split('.').collect()
        };
        naive(&p, &k)
    }

    fn check(ps: &[Pattern], key: &str) {
        let router = Router::new(ps);
        let want = reference(ps, key);
        assert_eq!(router.route(key), want, "key {key:?}, patterns {ps:?}");
        assert_eq!(router.matches_any(key), !want.is_empty(), "key {key:?}");
        for p in ps {
            let (naive, reference) = (naive_matches(p.as_str(), key), matches(p.as_str(), key));
            assert_eq!(naive, reference, "{p} vs {key:?}");
        }
    }

    /// Keys to try, including empty, empty-word, uppercase and non-ASCII ones (`""` is first).
    const KEYS: &str = "|.|..|a|a.|.a|a..b|a.b|a.b.c|a.b.b.c|a.c|c|b.c|A.b|ü.b|Ü.b|a.Ü|order|order.created|\
         Order|Order.created|Order.Created|o.v2.failed|заказ.создан|a+b.c";

    #[test]
    fn examples_agree_with_reference() {
        let ps = pats(&[
            "#",
            "a.#",
            "#.c",
            "a.#.c",
            "#.#",
            "*",
            "*.*",
            "a.*",
            "*.#",
            "#.*",
            "a.b",
            "a.b",
            "order.*",
            "order.#",
            "#.failed",
            "a.#.#.c",
            "#.b.#",
            "Order.*",
            "Order.Created",
            "Ü.#",
            "*.Ü",
            "A.b",
            "заказ.*",
            "a+b.#",
        ]);
        for key in KEYS.split('|') {
            check(&ps, key);
        }
    }

    #[test]
    fn fan_out_and_duplicates() {
        let ps = pats(&["order.*", "order.created", "#", "order.created", "user.*"]);
        let r = Router::new(&ps);
        assert_eq!(r.len(), 5);
        assert_eq!(r.route("order.created"), [0, 1, 2, 3]);
        assert_eq!(r.route("user.deleted"), [2, 4]);
        assert_eq!(r.route("other"), [2]);
        let mut out = vec![99, 98]; // route_into clears first and reuses the buffer
        r.route_into("user.x", &mut out);
        assert_eq!(out, [2, 4]);
    }

    #[test]
    fn words_beyond_lowercase_ascii() {
        let r = Router::new(pats(&["Order.*", "заказ.#", "a+b.c", "order.*", "*.Ü"]));
        assert_eq!(r.route("Order.Created"), [0]);
        assert_eq!(r.route("order.Created"), [3]);
        assert_eq!(r.route("заказ"), [1]);
        assert_eq!(r.route("заказ.создан.v2"), [1]);
        assert_eq!(r.route("a+b.c"), [2]);
        assert_eq!(r.route("Order.Ü"), [0, 4]);
        assert_eq!(r.route("order.ü"), [3], "case matters beyond ASCII too");
    }

    #[test]
    fn hash_positions() {
        let r = Router::new(pats(&["#.c", "a.#.c", "a.#", "#.#"]));
        assert_eq!(r.route("c"), [0, 3]);
        assert_eq!(r.route("a.c"), [0, 1, 2, 3]);
        assert_eq!(r.route("a.b.b.c"), [0, 1, 2, 3]);
        assert_eq!(r.route("a"), [2, 3]);
        assert_eq!(r.route("a.b.b.d"), [2, 3]);
    }

    #[test]
    fn empty_router() {
        for r in [Router::default(), Router::new(Vec::<Pattern>::new())] {
            assert!(r.is_empty());
            assert_eq!(r.len(), 0);
            for key in KEYS.split('|') {
                assert!(r.route(key).is_empty());
                assert!(!r.matches_any(key));
            }
        }
    }

    #[test]
    fn many_hashes_stay_fast() {
        // Naive backtracking would be exponential here; the state set stays small.
        let ps = pats(&["#.#.#.#.#.#.#.#.#.#.#.#.z", "#.a.#.a.#.a.#.a.#.a.#.b"]);
        let key = vec!["a"; 200].join(".");
        assert!(Router::new(&ps).route(&key).is_empty());
        assert_eq!(Router::new(&ps).route(&format!("{key}.z")), [0]);
    }

    fn pattern_strategy() -> impl Strategy<Value = Pattern> {
        let words = vec!["a", "b", "c", "Order", "Ü", "*", "#"];
        prop::collection::vec(prop::sample::select(words), 1..5)
            .prop_map(|w| Pattern::new(w.join(".")).unwrap())
    }

    fn key_strategy() -> impl Strategy<Value = String> {
        prop_oneof![
            1 => Just(String::new()),
            8 => prop::collection::vec(
                prop::sample::select(vec!["a", "b", "c", "d", "Order", "order", "Ü", "ü"]),
                0..6,
            )
            .prop_map(|w| w.join(".")),
            2 => "[abcAÜ.é]{0,8}",
        ]
    }

    proptest! {
        #[test]
        fn router_agrees_with_references(
            ps in prop::collection::vec(pattern_strategy(), 1..40),
            keys in prop::collection::vec(key_strategy(), 1..8),
        ) {
            let router = Router::new(&ps);
            let mut out = Vec::new();
            for key in &keys {
                let want = reference(&ps, key);
                router.route_into(key, &mut out);
                prop_assert_eq!(&out, &want, "key {:?}", key);
                prop_assert_eq!(router.matches_any(key), !want.is_empty());
                for p in &ps {
                    prop_assert_eq!(naive_matches(p.as_str(), key), matches(p.as_str(), key),
                        "naive vs pattern::matches: {} vs {:?}", p, key);
                    prop_assert_eq!(p.matches(key), matches(p.as_str(), key),
                        "Pattern::matches vs pattern::matches: {} vs {:?}", p, key);
                }
            }
        }
    }
}
