//! `#[handler]`: parse the arguments ([`attr`]), check the fn's signature ([`sig`]), then
//! keep the fn and register it ([`mod@expand`]).

mod attr;
mod expand;
mod sig;

use proc_macro2::TokenStream;
use syn::ext::IdentExt;
use syn::{Item, ItemFn};

use crate::ctxt::Ctxt;
use attr::HandlerArgs;

/// Expands `#[handler(...)]` on `item`, or returns every error found.
pub(crate) fn expand(args: TokenStream, item: TokenStream) -> syn::Result<TokenStream> {
    let cx = Ctxt::new();
    let args = HandlerArgs::parse(&cx, args);
    let function = match syn::parse2::<Item>(item) {
        Ok(Item::Fn(function)) => Some(function),
        Ok(other) => {
            cx.error_spanned_by(
                item_head(&other),
                "`#[handler]` goes on an `async fn`, e.g. \
                 `async fn audit(event: RawEvent) -> Result<(), HandlerError>`",
            );
            None
        }
        Err(error) => {
            cx.syn_error(error);
            None
        }
    };
    let generated = function.as_ref().and_then(|function| {
        let sig = sig::check(&cx, &function.sig)?;
        let fn_name = function.sig.ident.unraw().to_string();
        if args.name.is_none() && !fn_name.chars().all(attr::is_name_char) {
            cx.error_spanned_by(
                &function.sig.ident,
                "this fn name cannot be a handler name (ASCII letters, digits, `_`, `-`, `.` \
                 and `:` only): give one with `#[handler(name = \"...\")]`",
            );
        }
        if !args.pattern_written && sig::is_raw_event(sig.event) {
            cx.error_spanned_by(
                sig.event,
                "a `RawEvent` handler needs a pattern to subscribe to: \
                 `#[handler(\"order.*\")]` (`*` is one word, `#` zero or more)",
            );
        }
        Some(expand::registration(function, &sig, &args))
    });
    cx.check()?;
    let Some(function): Option<ItemFn> = function else {
        // A non-fn item recorded an error above, so `check` already returned it.
        return Err(syn::Error::new(
            proc_macro2::Span::call_site(),
            "`#[handler]` goes on an `async fn`",
        ));
    };
    Ok(quote::quote! {
        #function
        #generated
    })
}

/// The user's item unchanged, plus the errors: the fn stays callable and IDEs keep
/// resolving it (tokio-macros does the same).
pub(crate) fn fallback(item: TokenStream, error: syn::Error) -> TokenStream {
    let mut tokens = item;
    tokens.extend(error.into_compile_error());
    tokens
}

/// The tokens naming a non-fn item, to underline its head rather than its whole body.
fn item_head(item: &Item) -> TokenStream {
    use quote::{ToTokens, quote};
    match item {
        Item::Struct(s) => {
            let (token, ident) = (&s.struct_token, &s.ident);
            quote!(#token #ident)
        }
        Item::Enum(e) => {
            let (token, ident) = (&e.enum_token, &e.ident);
            quote!(#token #ident)
        }
        Item::Mod(m) => {
            let (token, ident) = (&m.mod_token, &m.ident);
            quote!(#token #ident)
        }
        Item::Trait(t) => {
            let (token, ident) = (&t.trait_token, &t.ident);
            quote!(#token #ident)
        }
        Item::Impl(i) => {
            let (token, ty) = (&i.impl_token, &i.self_ty);
            quote!(#token #ty)
        }
        other => other.to_token_stream(),
    }
}
