//! `#[event(domain = "...", action = "...", version = N, codec = "...", crate = "...")]`, or
//! `#[event(key = "session.{session_id}.code_updated", ...)]` instead of domain and action.

use proc_macro2::Span;
use syn::{Attribute, LitStr, Path, Type};

use super::template::KeyTemplate;
use crate::ctxt::Ctxt;
use crate::meta::{self, Slot};
use crate::pattern::{validate_key, validate_word};

/// The options `#[event(...)]` accepts, in the order the docs list them.
const KEYS: &[&str] = &[
    "domain", "action", "key", "version", "codec", "reply", "crate",
];

/// How the payload is encoded.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum CodecKind {
    /// `codec = "json"`, the default.
    Json,
    /// `codec = "protobuf"`; needs the facade's `protobuf` feature.
    Protobuf,
}

/// The parsed `#[event]` attributes of one type.
///
/// Values that failed validation are kept when they could still be used for the fallback
/// impl, and the error is recorded in the [`Ctxt`].
pub(crate) struct EventAttr {
    /// The first word of the key.
    pub(crate) domain: Option<LitStr>,
    /// The second word of the key.
    pub(crate) action: Option<LitStr>,
    /// `key = "..."`, whose shape is valid, instead of `domain` and `action`.
    pub(crate) key: Option<KeyTemplate>,
    /// Schema version, 1 by default.
    pub(crate) version: u32,
    /// The payload codec and the literal that chose it, if any.
    pub(crate) codec: (CodecKind, Option<Span>),
    /// `reply = T`: the type is a request, answered with a `T`.
    pub(crate) reply: Option<Type>,
    /// Path of the facade crate.
    pub(crate) krate: Path,
}

struct Builder {
    domain: Slot<LitStr>,
    action: Slot<LitStr>,
    key: Slot<LitStr>,
    version: Slot<u32>,
    codec: Slot<(CodecKind, Span)>,
    reply: Slot<Type>,
    krate: Slot<Path>,
    /// Keys written (valid or not) or suggested for a misspelled key: not "missing".
    mentioned: Vec<&'static str>,
}

impl EventAttr {
    /// Reads every `#[event(...)]` among `attrs`; `ident` names the type for the
    /// missing-attribute error.
    pub(crate) fn from_attrs(cx: &Ctxt, ident: &syn::Ident, attrs: &[Attribute]) -> Self {
        let mut b = Builder {
            domain: Slot::new("domain"),
            action: Slot::new("action"),
            key: Slot::new("key"),
            version: Slot::new("version"),
            codec: Slot::new("codec"),
            reply: Slot::new("reply"),
            krate: Slot::new("crate"),
            mentioned: Vec::new(),
        };
        let mut last = None;
        for attr in attrs.iter().filter(|a| a.path().is_ident("event")) {
            last = Some(attr);
            if let Err(error) = attr.parse_nested_meta(|meta| b.option(cx, meta)) {
                cx.syn_error(error);
            }
        }
        match last {
            None => cx.error_spanned_by(
                ident,
                format!(
                    "`#[derive(Event)]` needs an `#[event(domain = \"...\", action = \"...\")]` (or \
                     `#[event(key = \"...\")]`) attribute on `{ident}`"
                ),
            ),
            Some(_) if b.mentioned.contains(&"key") => {
                if let Some(key) = b.key.get() {
                    for given in [b.domain.get(), b.action.get()].into_iter().flatten() {
                        cx.error_at(
                            given.span(),
                            format!(
                                "`key = {:?}` names the whole key: give `key` or `domain` and \
                                 `action`, not both",
                                key.value()
                            ),
                        );
                    }
                }
            }
            Some(attr) => {
                for (slot, example) in [(&b.domain, "order"), (&b.action, "created")] {
                    if !b.mentioned.contains(&slot.name()) {
                        cx.error_spanned_by(
                            attr,
                            format!(
                                "missing `{name}` in `#[event(...)]`, e.g. `{name} = \"{example}\"`",
                                name = slot.name(),
                            ),
                        );
                    }
                }
            }
        }
        if let (Some(domain), Some(action)) = (b.domain.get(), b.action.get())
            && let Err(reason) = validate_key(&domain.value(), &action.value())
        {
            cx.error_at(action.span(), reason);
        }
        let key = b
            .key
            .into_inner()
            .and_then(|lit| KeyTemplate::parse(cx, &lit));
        Self {
            domain: b.domain.into_inner(),
            action: b.action.into_inner(),
            key,
            version: b.version.into_inner().unwrap_or(1),
            codec: b
                .codec
                .into_inner()
                .map_or((CodecKind::Json, None), |(kind, span)| (kind, Some(span))),
            reply: b.reply.into_inner(),
            krate: b
                .krate
                .into_inner()
                .unwrap_or_else(meta::default_crate_path),
        }
    }
}

impl Builder {
    fn option(&mut self, cx: &Ctxt, meta: syn::meta::ParseNestedMeta) -> syn::Result<()> {
        let key = meta.path.clone();
        if let Some(known) = KEYS.iter().find(|k| key.is_ident(k)) {
            self.mentioned.push(known);
        }
        if key.is_ident("domain") {
            if let Some(lit) = word(cx, &meta, "domain", "order")? {
                self.domain.set(cx, &key, lit);
            }
        } else if key.is_ident("action") {
            if let Some(lit) = word(cx, &meta, "action", "created")? {
                self.action.set(cx, &key, lit);
            }
        } else if key.is_ident("key") {
            let example = "session.{session_id}.code_updated";
            if let Some(lit) = meta::string(cx, "key", example, &meta::value(&meta)?) {
                self.key.set(cx, &key, lit);
            }
        } else if key.is_ident("version") {
            if let Some((version, span)) = meta::integer(cx, "version", 1, &meta::value(&meta)?) {
                if version == 0 {
                    cx.error_at(span, "`version` starts at 1");
                }
                self.version.set(cx, &key, version.max(1));
            }
        } else if key.is_ident("codec") {
            if let Some(lit) = meta::string(cx, "codec", "json", &meta::value(&meta)?) {
                let kind = match lit.value().as_str() {
                    "json" => CodecKind::Json,
                    "protobuf" => CodecKind::Protobuf,
                    other => {
                        cx.error_at(
                            lit.span(),
                            format!("unknown codec {other:?}; expected \"json\" or \"protobuf\""),
                        );
                        CodecKind::Json
                    }
                };
                self.codec.set(cx, &key, (kind, lit.span()));
            }
        } else if key.is_ident("reply") {
            if let Some(ty) = reply_type(cx, &meta)? {
                self.reply.set(cx, &key, ty);
            }
        } else if key.is_ident("crate") {
            if let Some(path) = meta::crate_path(cx, &meta::value(&meta)?) {
                self.krate.set(cx, &key, path);
            }
        } else if let Some(suggested) = meta::unknown(cx, &meta, "event", KEYS)? {
            self.mentioned.push(suggested);
        }
        Ok(())
    }
}

/// `domain = "..."` or `action = "..."`: one word of `[a-z0-9_-]`. An invalid word is
/// reported and still returned, so that the fallback impl can use it.
fn word(
    cx: &Ctxt,
    meta: &syn::meta::ParseNestedMeta,
    what: &str,
    example: &str,
) -> syn::Result<Option<LitStr>> {
    let lit = meta::string(cx, what, example, &meta::value(meta)?);
    if let Some(lit) = &lit
        && let Err(reason) = validate_word(&lit.value(), what)
    {
        cx.error_at(lit.span(), reason);
    }
    Ok(lit)
}

/// `reply = UserProfile`: a type, written bare. A string or `()` is reported with how to
/// write it.
fn reply_type(cx: &Ctxt, meta: &syn::meta::ParseNestedMeta) -> syn::Result<Option<Type>> {
    let input = meta.value()?;
    if input.peek(LitStr) {
        let lit: LitStr = input.parse()?;
        cx.error_spanned_by(
            &lit,
            format!(
                "`reply` takes a type, not a string: `reply = {}`",
                lit.value()
            ),
        );
        return Ok(None);
    }
    let ty: Type = input.parse()?;
    if matches!(&ty, Type::Tuple(tuple) if tuple.elems.is_empty()) {
        cx.error_spanned_by(
            &ty,
            "a request answers with a value: name its type, `reply = UserProfile` \
             (an event, whose handlers answer nothing, needs no `reply`)",
        );
        return Ok(None);
    }
    Ok(Some(ty))
}
