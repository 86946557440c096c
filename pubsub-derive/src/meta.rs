//! Helpers shared by the `#[event(...)]` and `#[handler(...)]` attribute parsers: typed
//! values out of `key = value` pairs, duplicate detection, unknown keys with a suggestion,
//! and the `crate = "..."` override.

use proc_macro2::{Group, Span, TokenStream, TokenTree};
use quote::ToTokens;
use syn::meta::ParseNestedMeta;
use syn::{Expr, Lit, LitInt, LitStr, Path};

use crate::ctxt::Ctxt;

/// One attribute option, set at most once: a duplicate is reported at its second
/// occurrence.
pub(crate) struct Slot<T> {
    name: &'static str,
    value: Option<T>,
}

impl<T> Slot<T> {
    /// An unset option called `name`.
    pub(crate) fn new(name: &'static str) -> Self {
        Self { name, value: None }
    }

    /// Sets the option from `key = ...`; a second occurrence is an error at that `key`.
    pub(crate) fn set(&mut self, cx: &Ctxt, key: &Path, value: T) {
        if self.value.is_some() {
            cx.error_spanned_by(key, format!("duplicate `{}` option", self.name));
        } else {
            self.value = Some(value);
        }
    }

    /// The option's name.
    pub(crate) fn name(&self) -> &'static str {
        self.name
    }

    /// The value, if set.
    pub(crate) fn get(&self) -> Option<&T> {
        self.value.as_ref()
    }

    /// Consumes the option.
    pub(crate) fn into_inner(self) -> Option<T> {
        self.value
    }
}

/// The expression after `key =`, with invisible groups (from `macro_rules!`) removed.
pub(crate) fn value(meta: &ParseNestedMeta) -> syn::Result<Expr> {
    let mut expr: Expr = meta.value()?.parse()?;
    while let Expr::Group(group) = expr {
        expr = *group.expr;
    }
    Ok(expr)
}

/// A string literal, or an error at `expr` that shows how to write `key`.
pub(crate) fn string(cx: &Ctxt, key: &str, example: &str, expr: &Expr) -> Option<LitStr> {
    match expr {
        Expr::Lit(lit) => match &lit.lit {
            Lit::Str(s) => return Some(s.clone()),
            other => cx.error_spanned_by(
                other,
                format!("`{key}` takes a string literal: `{key} = \"{example}\"`"),
            ),
        },
        other => cx.error_spanned_by(
            other,
            format!("`{key}` takes a string literal: `{key} = \"{example}\"`"),
        ),
    }
    None
}

/// A `u32` integer literal, or an error at `expr` that shows how to write `key`.
pub(crate) fn integer(cx: &Ctxt, key: &str, example: u32, expr: &Expr) -> Option<(u32, Span)> {
    let hint = format!("`{key}` takes an integer literal: `{key} = {example}`");
    let Expr::Lit(lit) = expr else {
        cx.error_spanned_by(expr, hint);
        return None;
    };
    match &lit.lit {
        Lit::Int(int) => match int_value(int) {
            Ok(value) => return Some((value, int.span())),
            Err(reason) => cx.error_at(int.span(), format!("`{key}` {reason}")),
        },
        Lit::Str(s) if s.value().trim().parse::<u32>().is_ok() => {
            cx.error_at(s.span(), format!("{hint}, without quotes"))
        }
        other => cx.error_spanned_by(other, hint),
    }
    None
}

fn int_value(int: &LitInt) -> Result<u32, &'static str> {
    if !matches!(int.suffix(), "" | "u32") {
        return Err("must be an unsuffixed integer (a `u32`)");
    }
    int.base10_parse::<u32>()
        .map_err(|_| "must fit in a `u32` (0 to 4294967295)")
}

/// The facade path from `crate = "path"`, e.g. `crate = "my_pubsub"`.
pub(crate) fn crate_path(cx: &Ctxt, expr: &Expr) -> Option<Path> {
    let lit = string(cx, "crate", "my_pubsub", expr)?;
    match lit.parse::<Path>() {
        Ok(path) => Some(path),
        Err(_) => {
            cx.error_at(
                lit.span(),
                format!(
                    "`crate` must name the `pubsub` crate as a path, e.g. `crate = \"my_pubsub\"`, found {:?}",
                    lit.value()
                ),
            );
            None
        }
    }
}

/// The default facade path, `::pubsub`.
pub(crate) fn default_crate_path() -> Path {
    syn::parse_quote!(::pubsub)
}

/// Reports an unknown `key`, suggesting the closest valid one (which it returns, so that
/// the caller can skip the "missing" error for it), and skips its value so that parsing
/// carries on with the next option.
pub(crate) fn unknown(
    cx: &Ctxt,
    meta: &ParseNestedMeta,
    attr: &str,
    keys: &[&'static str],
) -> syn::Result<Option<&'static str>> {
    let name = meta.path.to_token_stream().to_string().replace(' ', "");
    let mut message = format!("unknown `{attr}` option `{name}`");
    let best = closest(&name, keys);
    if let Some(best) = best {
        message.push_str(&format!("; did you mean `{best}`?"));
    }
    let list: Vec<String> = keys.iter().map(|k| format!("`{k}`")).collect();
    message.push_str(&format!(" (expected one of {})", list.join(", ")));
    cx.error_spanned_by(&meta.path, message);
    skip_value(meta)?;
    Ok(best)
}

/// Consumes `= expr` or `(...)` after a key.
pub(crate) fn skip_value(meta: &ParseNestedMeta) -> syn::Result<()> {
    if meta.input.peek(syn::Token![=]) {
        value(meta).map(drop)
    } else if meta.input.peek(syn::token::Paren) {
        meta.input.parse::<proc_macro2::TokenTree>().map(drop)
    } else {
        Ok(())
    }
}

/// The valid key within edit distance 2 of `name`, if any.
fn closest(name: &str, keys: &[&'static str]) -> Option<&'static str> {
    keys.iter()
        .map(|key| (distance(name, key), *key))
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d)
        .map(|(_, key)| key)
}

/// Levenshtein distance.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1)
                .min(row[j] + 1)
                .min(diagonal + usize::from(ca != *cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

/// `tokens` with every span (groups included) set to `span`.
pub(crate) fn respan(tokens: TokenStream, span: Span) -> TokenStream {
    tokens
        .into_iter()
        .map(|mut tree| {
            if let TokenTree::Group(group) = &tree {
                let mut inner = Group::new(group.delimiter(), respan(group.stream(), span));
                inner.set_span(span);
                tree = TokenTree::Group(inner);
            } else {
                tree.set_span(span);
            }
            tree
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions() {
        let keys = ["domain", "action", "version", "codec", "crate"];
        assert_eq!(closest("domian", &keys), Some("domain"));
        assert_eq!(closest("versoin", &keys), Some("version"));
        assert_eq!(closest("name", &keys), None);
        assert_eq!(distance("", "abc"), 3);
        assert_eq!(distance("kitten", "sitting"), 3);
    }
}
