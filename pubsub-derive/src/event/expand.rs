//! The generated `impl Event`.

use proc_macro2::{Ident, Span, TokenStream};
use quote::{ToTokens, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{DeriveInput, LitStr};

use super::attr::{CodecKind, EventAttr};
use super::template::Param;
use crate::meta::respan;

/// `impl ::pubsub::__private::Event for #ident { ... }`, and for a key with parameters
/// (`params`, in order) a constant per parameter.
///
/// Also used as the fallback after errors: a missing word is replaced by `unknown` then.
pub(crate) fn impl_event(input: &DeriveInput, attr: &EventAttr, params: &[Param]) -> TokenStream {
    let ident = &input.ident;
    let krate = &attr.krate;
    let word = |lit: &Option<LitStr>| {
        lit.as_ref()
            .map_or_else(|| "unknown".to_owned(), LitStr::value)
    };
    let (domain, action) = match &attr.key {
        Some(template) => (template.domain(), template.action()),
        None => (word(&attr.domain), word(&attr.action)),
    };
    let key = format!("{domain}.{action}");
    let version = attr.version;
    let key_params = key_params(attr, params);
    let constants = param_constants(input, attr, params);

    // Point "the trait bound `T: Serialize` is not satisfied" (required by the codec) at
    // `codec = "..."` when it was written, at `derive(Event)` otherwise.
    let (kind, codec_span) = attr.codec;
    let span = codec_span.unwrap_or_else(Span::call_site);
    let codec_krate = respan(krate.to_token_stream(), span);
    let codec = match kind {
        CodecKind::Json => quote_spanned!(span=> #codec_krate::__private::Json),
        CodecKind::Protobuf => quote_spanned!(span=> #codec_krate::__private::Protobuf),
    };

    // `reply = T` makes it a request; "`T: Serialize` is not satisfied" underlines `T`
    let (reply, request) = match &attr.reply {
        Some(ty) => (
            ty.to_token_stream(),
            Some(quote! {
                #[automatically_derived]
                impl #krate::__private::Request for #ident {}
            }),
        ),
        None => (quote!(()), None),
    };

    quote! {
        #[automatically_derived]
        impl #krate::__private::Event for #ident {
            const DOMAIN: &'static str = #domain;
            const ACTION: &'static str = #action;
            const KEY: &'static str = #key;
            const VERSION: u32 = #version;
            type Codec = #codec;
            type Reply = #reply;
            #key_params
        }
        #request
        // makes the domain known to stream-backed buses with wildcard patterns
        #krate::__private::inventory::submit! {
            #krate::__private::EventRegistration::new(#domain, #action, #version)
        }
        #constants
    }
}

/// For a key with parameters: `KEY_PARAMS`, `PATTERN` and `routing_key`, which fills each
/// placeholder from its field through `KeyWord` (spanned at the field's type, so that a type
/// that is not one is reported there).
fn key_params(attr: &EventAttr, params: &[Param]) -> Option<TokenStream> {
    let template = attr.key.as_ref()?;
    if params.is_empty() {
        return None;
    }
    let p = {
        let krate = &attr.krate;
        quote!(#krate::__private)
    };
    let names = params.iter().map(|param| param.field.to_string());
    let pattern = template.pattern();
    let values = params.iter().map(|param| {
        let span = param.ty.span();
        let call = respan(quote!(#p::key_word::<), span);
        let (ty, field) = (&param.ty, &param.field);
        quote_spanned!(span=> #call #ty>(&self.#field))
    });
    Some(quote! {
        const KEY_PARAMS: &'static [&'static str] = &[#(#names),*];
        const PATTERN: &'static str = #pattern;
        fn routing_key(
            &self,
        ) -> ::core::result::Result<#p::Cow<'static, str>, #p::KeyError> {
            #p::fill_key(<Self as #p::Event>::KEY, &[#(#values),*])
        }
    })
}

/// `impl Type { pub const SESSION_ID: KeyParam<Type, u64> = ..; }`: the typed names of the
/// key's parameters, with the type's visibility.
fn param_constants(input: &DeriveInput, attr: &EventAttr, params: &[Param]) -> TokenStream {
    if params.is_empty() {
        return TokenStream::new();
    }
    let (ident, vis) = (&input.ident, &input.vis);
    let p = {
        let krate = &attr.krate;
        quote!(#krate::__private)
    };
    let template = attr.key.as_ref().map(|t| t.text()).unwrap_or_default();
    let constants = params.iter().map(|param| {
        let (field, ty) = (&param.field, &param.ty);
        let name = field.to_string();
        let constant = Ident::new(&name.to_ascii_uppercase(), field.span());
        let doc = format!("The key parameter `{name}` of `{template}`.");
        quote! {
            #[doc = #doc]
            #vis const #constant: #p::KeyParam<#ident, #ty> = #p::key_param::<#ident, #ty>(#name);
        }
    });
    quote! {
        #[automatically_derived]
        impl #ident {
            #(#constants)*
        }
    }
}
