//! `#[handler("pattern", name = "...", timeout = "5s", retries = 3, retry = "...",
//! service = "...", foreign, crate = "...")]`.

use proc_macro2::{TokenStream, TokenTree};
use syn::parse::discouraged::Speculative;
use syn::parse::{ParseStream, Parser};
use syn::{Lit, LitStr, Path};

use crate::ctxt::Ctxt;
use crate::meta::{self, Slot};
use crate::pattern::{quoted, validate_pattern};

/// The options after the pattern, in the order the docs list them.
const KEYS: &[&str] = &[
    "name", "timeout", "retries", "retry", "service", "foreign", "crate",
];

/// The parsed arguments of `#[handler(...)]`.
pub(crate) struct HandlerArgs {
    /// The topic pattern, the optional leading string literal.
    pub(crate) pattern: Option<LitStr>,
    /// Whether a pattern was written at all, even in a rejected form (so that a `RawEvent`
    /// handler is not also told that it lacks one).
    pub(crate) pattern_written: bool,
    /// Registered name; the fn name by default.
    pub(crate) name: Option<LitStr>,
    /// Per-invocation timeout in milliseconds.
    pub(crate) timeout_ms: Option<u64>,
    /// Retries with the bus's default policy.
    pub(crate) retries: Option<u32>,
    /// A named retry policy.
    pub(crate) retry: Option<LitStr>,
    /// Only run on buses of this service.
    pub(crate) service: Option<LitStr>,
    /// `foreign`: the pattern is for events other services define, not a type of this
    /// binary (no warning at `build()` when it matches none of them).
    pub(crate) foreign: bool,
    /// Path of the facade crate.
    pub(crate) krate: Path,
}

struct Builder {
    name: Slot<LitStr>,
    timeout: Slot<u64>,
    retries: Slot<u32>,
    retry: Slot<LitStr>,
    service: Slot<LitStr>,
    foreign: Slot<()>,
    krate: Slot<Path>,
    /// `pattern = "..."` was written.
    pattern_key: bool,
}

const RETRY_CONFLICT: &str = "`retries` and `retry` are mutually exclusive: `retries = N` uses \
    the default policy with N retries, `retry = \"name\"` a policy the bus defines with \
    `.define_retry_policy(\"name\", ..)`";

impl HandlerArgs {
    /// Parses the attribute's arguments, recording every error in `cx`.
    pub(crate) fn parse(cx: &Ctxt, args: TokenStream) -> Self {
        let mut pattern = None;
        let mut pattern_written = false;
        let mut b = Builder {
            name: Slot::new("name"),
            timeout: Slot::new("timeout"),
            retries: Slot::new("retries"),
            retry: Slot::new("retry"),
            service: Slot::new("service"),
            foreign: Slot::new("foreign"),
            krate: Slot::new("crate"),
            pattern_key: false,
        };
        let rest = (|input: ParseStream| leading_pattern(cx, input)).parse2(args);
        match rest {
            Ok((lit, written, rest)) => {
                pattern = lit;
                pattern_written = written;
                let parser = syn::meta::parser(|meta| b.option(cx, meta));
                if let Err(error) = parser.parse2(rest) {
                    cx.syn_error(error);
                }
            }
            Err(error) => cx.syn_error(error),
        }
        if let Some(lit) = &pattern
            && let Err(reason) = validate_pattern(&lit.value())
        {
            cx.error_at(
                lit.span(),
                format!("invalid pattern {}: {reason}", quoted(&lit.value())),
            );
        }
        Self {
            pattern_written: pattern_written || b.pattern_key,
            pattern,
            name: b.name.into_inner(),
            timeout_ms: b.timeout.into_inner(),
            retries: b.retries.into_inner(),
            retry: b.retry.into_inner(),
            service: b.service.into_inner(),
            foreign: b.foreign.into_inner().is_some(),
            krate: b
                .krate
                .into_inner()
                .unwrap_or_else(meta::default_crate_path),
        }
    }
}

/// The optional leading pattern literal and its comma; returns it, whether a pattern was
/// written in any form, and the remaining tokens.
fn leading_pattern(
    cx: &Ctxt,
    input: ParseStream<'_>,
) -> syn::Result<(Option<LitStr>, bool, TokenStream)> {
    let mut pattern = None;
    let mut written = true;
    if input.peek(LitStr) {
        pattern = Some(input.parse::<LitStr>()?);
    } else if input.peek(Lit) {
        let lit: Lit = input.parse()?;
        cx.error_spanned_by(
            &lit,
            "the pattern is a string literal: `#[handler(\"order.*\")]`",
        );
    } else if let Some(tokens) = unquoted_pattern(input)? {
        let text: String = tokens.iter().map(ToString::to_string).collect();
        cx.error_spanned_by(
            tokens.iter().cloned().collect::<TokenStream>(),
            format!("the pattern is a string literal: `#[handler(\"{text}\")]`"),
        );
    } else {
        written = false;
    }
    if written && !input.is_empty() {
        input.parse::<syn::Token![,]>()?;
    }
    Ok((pattern, written, input.parse()?))
}

/// Consumes and returns the tokens before the first comma if they look like a pattern
/// written without quotes (`order.*`, `#`), rather than like an option (`name = ..`).
fn unquoted_pattern(input: ParseStream<'_>) -> syn::Result<Option<Vec<TokenTree>>> {
    let fork = input.fork();
    let mut head = Vec::new();
    while !fork.is_empty() && !fork.peek(syn::Token![,]) {
        head.push(fork.parse::<TokenTree>()?);
    }
    let option_like = match head.as_slice() {
        [] => true,
        [TokenTree::Ident(_)] => true,
        [TokenTree::Ident(_), TokenTree::Punct(p), ..] => p.as_char() == '=',
        [TokenTree::Ident(_), TokenTree::Group(_), ..] => true,
        _ => false,
    };
    if option_like {
        return Ok(None);
    }
    input.advance_to(&fork);
    Ok(Some(head))
}

impl Builder {
    fn option(&mut self, cx: &Ctxt, meta: syn::meta::ParseNestedMeta) -> syn::Result<()> {
        let key = meta.path.clone();
        let non_empty = |lit: LitStr, what: &str| {
            if lit.value().is_empty() {
                cx.error_at(lit.span(), format!("`{what}` cannot be empty"));
            }
            lit
        };
        if key.is_ident("name") {
            if let Some(lit) = meta::string(cx, "name", "audit", &meta::value(&meta)?) {
                let lit = non_empty(lit, "name");
                if let Some(bad) = lit.value().chars().find(|c| !is_name_char(*c)) {
                    cx.error_at(
                        lit.span(),
                        format!(
                            "handler names may only contain ASCII letters, digits, `_`, `-`, `.` and `:` \
                             (they travel in a comma-separated dead-letter header), found {bad:?}"
                        ),
                    );
                }
                self.name.set(cx, &key, lit);
            }
        } else if key.is_ident("timeout") {
            if let Some(lit) = meta::string(cx, "timeout", "5s", &meta::value(&meta)?) {
                match parse_duration_ms(&lit.value()) {
                    Ok(ms) => self.timeout.set(cx, &key, ms),
                    Err(reason) => cx.error_at(lit.span(), reason),
                }
            }
        } else if key.is_ident("retries") {
            if let Some((n, _)) = meta::integer(cx, "retries", 3, &meta::value(&meta)?) {
                if self.retry.get().is_some() {
                    cx.error_spanned_by(&key, RETRY_CONFLICT);
                }
                self.retries.set(cx, &key, n);
            }
        } else if key.is_ident("retry") {
            if let Some(lit) = meta::string(cx, "retry", "slow", &meta::value(&meta)?) {
                if self.retries.get().is_some() {
                    cx.error_spanned_by(&key, RETRY_CONFLICT);
                }
                self.retry.set(cx, &key, non_empty(lit, "retry"));
            }
        } else if key.is_ident("service") {
            if let Some(lit) = meta::string(cx, "service", "billing", &meta::value(&meta)?) {
                self.service.set(cx, &key, non_empty(lit, "service"));
            }
        } else if key.is_ident("foreign") {
            if meta.input.peek(syn::Token![=]) {
                cx.error_spanned_by(
                    &key,
                    "`foreign` takes no value: `#[handler(\"partner.#\", foreign)]`",
                );
                meta::skip_value(&meta)?;
            } else {
                self.foreign.set(cx, &key, ());
            }
        } else if key.is_ident("crate") {
            if let Some(path) = meta::crate_path(cx, &meta::value(&meta)?) {
                self.krate.set(cx, &key, path);
            }
        } else if key.is_ident("pattern") {
            self.pattern_key = true;
            cx.error_spanned_by(
                &key,
                "the pattern is the first argument, without a key: `#[handler(\"order.*\", ...)]`",
            );
            meta::skip_value(&meta)?;
        } else {
            meta::unknown(cx, &meta, "handler", KEYS)?;
        }
        Ok(())
    }
}

/// `"250ms"`, `"5s"`, `"2m"`, `"1h"` in milliseconds; must be greater than zero.
pub(crate) fn parse_duration_ms(text: &str) -> Result<u64, String> {
    let hint = "write a duration such as \"250ms\", \"5s\", \"2m\" or \"1h\"";
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    let (number, unit) = text.split_at(digits);
    let scale: u64 = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "" if !number.is_empty() => {
            return Err(format!("timeout {text:?} has no unit; {hint}"));
        }
        _ if number.is_empty() => return Err(format!("invalid timeout {text:?}; {hint}")),
        _ => return Err(format!("unknown unit {unit:?} in timeout {text:?}; {hint}")),
    };
    let value: u64 = number
        .parse()
        .map_err(|_| format!("invalid timeout {text:?}; {hint}"))?;
    match value.checked_mul(scale) {
        Some(0) => Err(format!("timeout must be greater than zero; {hint}")),
        Some(ms) => Ok(ms),
        None => Err(format!("timeout {text:?} is too long")),
    }
}

/// Characters a handler name may use (the bus checks the same at run time).
pub(crate) fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':')
}

#[cfg(test)]
mod tests {
    use super::parse_duration_ms;

    #[test]
    fn durations() {
        assert_eq!(parse_duration_ms("250ms"), Ok(250));
        assert_eq!(parse_duration_ms("5s"), Ok(5_000));
        assert_eq!(parse_duration_ms("2m"), Ok(120_000));
        assert_eq!(parse_duration_ms("1h"), Ok(3_600_000));
        for bad in [
            "",
            "5",
            "s",
            "0s",
            "5 s",
            "-1s",
            "1.5s",
            "5sec",
            "99999999999999999999h",
        ] {
            assert!(
                parse_duration_ms(bad).is_err(),
                "{bad:?} should be rejected"
            );
        }
    }
}
