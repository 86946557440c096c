//! `#[event(key = "session.{session_id}.code_updated")]`: the key template, its words
//! checked, and each `{placeholder}` resolved to a field of the struct.

use std::collections::BTreeSet;

use syn::{Data, DeriveInput, Fields, Ident, LitStr, Type};

use crate::ctxt::Ctxt;
use crate::pattern::{MAX_LEN, validate_word};

/// A key template whose shape is valid.
pub(crate) struct KeyTemplate {
    /// The literal, for spans.
    pub(crate) lit: LitStr,
    /// Its words, in order.
    pub(crate) words: Vec<Word>,
}

/// One word of a key template.
pub(crate) enum Word {
    /// A literal word, `[a-z0-9_-]+`.
    Literal(String),
    /// `{field}`: the name of the field whose value fills it.
    Param(String),
}

/// A placeholder resolved to its field.
pub(crate) struct Param {
    /// The field, which names the parameter.
    pub(crate) field: Ident,
    /// The field's type, which must be a `KeyWord`.
    pub(crate) ty: Type,
}

/// Associated items of `Event` that a parameter's generated constant would shadow.
const EVENT_ITEMS: &[&str] = &[
    "DOMAIN",
    "ACTION",
    "KEY",
    "KEY_PARAMS",
    "PATTERN",
    "VERSION",
];

impl KeyTemplate {
    /// Checks the template's words, recording every error in `cx`; `None` if its shape is
    /// unusable.
    pub(crate) fn parse(cx: &Ctxt, lit: &LitStr) -> Option<Self> {
        let text = lit.value();
        let mut words = Vec::new();
        let mut errors = Vec::new();
        for (i, word) in text.split('.').enumerate() {
            if word.is_empty() {
                errors.push(format!(
                    "the key {text:?} has an empty word (leading, trailing or double dot)"
                ));
            } else if word.contains(['{', '}']) {
                match placeholder(word) {
                    Some(name) if i == 0 => errors.push(format!(
                        "the key's first word is its domain, which names the event's stream: it \
                         cannot be the parameter `{{{name}}}`"
                    )),
                    Some(name) => words.push(Word::Param(name.to_owned())),
                    None => errors.push(format!(
                        "the key word {word:?} is neither a literal word nor one `{{field}}` \
                         placeholder, e.g. `session.{{session_id}}.code_updated`"
                    )),
                }
            } else if let Err(reason) = validate_word(word, "key") {
                errors.push(reason);
            } else {
                words.push(Word::Literal(word.to_owned()));
            }
        }
        if errors.is_empty() && words.len() < 2 {
            errors.push(format!(
                "the key {text:?} needs at least two words, the domain and the action: \
                 `key = \"order.created\"`"
            ));
        }
        // a placeholder is at least one byte
        let shortest: usize = words
            .iter()
            .map(|w| match w {
                Word::Literal(word) => word.len(),
                Word::Param(_) => 1,
            })
            .sum::<usize>()
            + words.len().saturating_sub(1);
        if shortest > MAX_LEN {
            errors.push(format!(
                "the key is at least {shortest} bytes long, over the AMQP limit of {MAX_LEN} bytes"
            ));
        }
        let ok = errors.is_empty();
        for message in errors {
            cx.error_at(lit.span(), message);
        }
        ok.then(|| Self {
            lit: lit.clone(),
            words,
        })
    }

    /// The first word, a literal.
    pub(crate) fn domain(&self) -> String {
        self.text().split('.').next().unwrap_or_default().to_owned()
    }

    /// The rest after the first dot.
    pub(crate) fn action(&self) -> String {
        let text = self.text();
        text.split_once('.')
            .map_or_else(String::new, |(_, rest)| rest.to_owned())
    }

    /// The template as written.
    pub(crate) fn text(&self) -> String {
        self.lit.value()
    }

    /// What a handler binds by default: every placeholder as `*`.
    pub(crate) fn pattern(&self) -> String {
        let words: Vec<&str> = self
            .words
            .iter()
            .map(|w| match w {
                Word::Literal(word) => word.as_str(),
                Word::Param(_) => "*",
            })
            .collect();
        words.join(".")
    }

    /// Each placeholder's field, in order; every placeholder that names no field, or one
    /// already named, is reported and left out.
    pub(crate) fn resolve(&self, cx: &Ctxt, input: &DeriveInput) -> Vec<Param> {
        let names: Vec<&str> = self
            .words
            .iter()
            .filter_map(|w| match w {
                Word::Param(name) => Some(name.as_str()),
                Word::Literal(_) => None,
            })
            .collect();
        if names.is_empty() {
            return Vec::new();
        }
        let ident = &input.ident;
        let fields = match &input.data {
            Data::Struct(data) => match &data.fields {
                Fields::Named(fields) => Some(&fields.named),
                _ => None,
            },
            _ => None,
        };
        let Some(fields) = fields else {
            cx.error_at(
                self.lit.span(),
                format!(
                    "key parameters are fields: `{ident}` must be a struct with named fields to \
                     fill `{{{}}}`",
                    names[0]
                ),
            );
            return Vec::new();
        };
        let mut seen = BTreeSet::new();
        let mut params = Vec::new();
        for name in names {
            if !seen.insert(name) {
                cx.error_at(
                    self.lit.span(),
                    format!("the key names `{{{name}}}` twice; a field fills one word"),
                );
                continue;
            }
            let field = fields
                .iter()
                .find(|f| f.ident.as_ref().is_some_and(|i| i == name));
            let Some(field) = field else {
                let known: Vec<String> = fields
                    .iter()
                    .filter_map(|f| f.ident.as_ref().map(|i| format!("`{i}`")))
                    .collect();
                cx.error_at(
                    self.lit.span(),
                    format!(
                        "the key's placeholder `{{{name}}}` names no field of `{ident}` (its \
                         fields: {})",
                        known.join(", ")
                    ),
                );
                continue;
            };
            let constant = name.to_ascii_uppercase();
            if EVENT_ITEMS.contains(&constant.as_str()) {
                cx.error_at(
                    self.lit.span(),
                    format!(
                        "the key parameter `{name}` would be named `{ident}::{constant}`, which \
                         `Event::{constant}` already is: rename the field"
                    ),
                );
                continue;
            }
            if let Some(field_ident) = &field.ident {
                params.push(Param {
                    field: field_ident.clone(),
                    ty: field.ty.clone(),
                });
            }
        }
        params
    }
}

/// The name inside `{name}`, if `word` is exactly one placeholder of an identifier.
fn placeholder(word: &str) -> Option<&str> {
    let name = word.strip_prefix('{')?.strip_suffix('}')?;
    let mut chars = name.chars();
    let first = chars.next()?;
    let identifier = (first.is_ascii_alphabetic() || first == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    identifier.then_some(name)
}

#[cfg(test)]
mod tests {
    use super::placeholder;

    #[test]
    fn placeholders_are_one_identifier() {
        assert_eq!(placeholder("{session_id}"), Some("session_id"));
        for bad in ["{}", "{a}b", "a{b}", "{a b}", "{1a}", "{{a}}", "{a"] {
            assert_eq!(placeholder(bad), None, "{bad}");
        }
    }
}
