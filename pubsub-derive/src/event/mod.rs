//! `#[derive(Event)]`: parse `#[event(...)]` ([`attr`]), check the type's shape, then
//! implement `Event` ([`mod@expand`]).

mod attr;
mod expand;
mod template;

use proc_macro2::TokenStream;
use syn::{Data, DeriveInput};

use crate::ctxt::Ctxt;
use attr::EventAttr;

/// Expands `#[derive(Event)]`, or returns every error found.
pub(crate) fn expand(input: &DeriveInput) -> syn::Result<TokenStream> {
    let cx = Ctxt::new();
    let attr = EventAttr::from_attrs(&cx, &input.ident, &input.attrs);
    let params = resolve_params(&cx, input, &attr);
    check_shape(&cx, input);
    cx.check()?;
    Ok(expand::impl_event(input, &attr, &params))
}

/// The errors, plus a best-effort `Event` impl when the type can have one, so that uses of
/// the type elsewhere do not add a cascade of "not an event" errors (thiserror's fallback).
pub(crate) fn fallback(input: &DeriveInput, error: syn::Error) -> TokenStream {
    let mut tokens = error.into_compile_error();
    if shape_allows_impl(input) {
        // The errors were reported above; this pass only recovers the usable values.
        let cx = Ctxt::new();
        let attr = EventAttr::from_attrs(&cx, &input.ident, &input.attrs);
        let params = resolve_params(&cx, input, &attr);
        drop(cx.check());
        tokens.extend(expand::impl_event(input, &attr, &params));
    }
    tokens
}

/// The fields that fill the key's placeholders, in order (none for a constant key).
fn resolve_params(cx: &Ctxt, input: &DeriveInput, attr: &EventAttr) -> Vec<template::Param> {
    attr.key
        .as_ref()
        .map(|template| template.resolve(cx, input))
        .unwrap_or_default()
}

/// Records an error for generic types and unions.
fn check_shape(cx: &Ctxt, input: &DeriveInput) {
    if !input.generics.params.is_empty() {
        cx.error_spanned_by(
            &input.generics,
            "events must be 'static, non-generic types: remove the generic parameters \
             (an event is published and routed by one fixed key)",
        );
    }
    if let Data::Union(data) = &input.data {
        cx.error_spanned_by(
            data.union_token,
            "`Event` cannot be derived for a union; use a struct or an enum",
        );
    }
}

fn shape_allows_impl(input: &DeriveInput) -> bool {
    input.generics.params.is_empty() && !matches!(input.data, Data::Union(_))
}
